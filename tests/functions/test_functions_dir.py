"""Where farm functions keep their files: asked of the driver (``HasStateDir``), never
worked out from the URL's scheme."""

from __future__ import annotations

from pathlib import Path

import pytest

from aiofarm import Client
from aiofarm.errors import FarmError

from . import farm_funcs

pytestmark = pytest.mark.anyio


@pytest.fixture(autouse=True)
def _no_functions_dir_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("AIOFARM_FUNCTIONS_DIR", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))


async def test_state_dir_option_is_honoured(tmp_path: Path) -> None:
    # the state dir given as an option, not in the URL: the URL alone says nothing
    state = tmp_path / "given"
    async with Client("local://", state_dir=str(state)) as farm:
        assert farm.functions.root == state / "functions"
        job = await farm.functions.create(farm_funcs.add)(1, 2)
        assert await farm.functions.result(job) == 3
    assert list((state / "functions").glob("*/calls/*/result.pkl"))


async def test_driver_without_state_dir_uses_the_data_home(tmp_path: Path) -> None:
    async with Client("dummy://") as farm:
        assert farm.functions.root == tmp_path / "xdg" / "aiofarm" / "functions"


async def test_root_before_open_is_an_error() -> None:
    farm = Client("dummy://")
    with pytest.raises(FarmError, match="not open"):
        farm.functions.root  # noqa: B018


async def test_explicit_root_and_environment_win(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with Client("local://" + str(tmp_path / "farm")) as farm:
        monkeypatch.setenv("AIOFARM_FUNCTIONS_DIR", str(tmp_path / "env"))
        assert farm.functions.root == tmp_path / "env"
