"""Secrets never appear in a repr, a str, a log record or an error message."""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

import pytest

import aiofarm
from aiofarm import Client, JobSpec, Secret
from aiofarm.redaction import install_log_filter, is_secret_name, redact

pytestmark = [pytest.mark.reliability]

TOKEN = "tok-3f9a1c77e2b94d05"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1c2VyIn0.c2lnbmF0dXJlLXRleHQ"
AWS_ID = "AKIAIOSFODNN7EXAMPLE"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
PASSWORD = "hunter2-p4ss"
ALL = (TOKEN, JWT, AWS_ID, AWS_SECRET, PASSWORD)


def _clean(text: str) -> bool:
    return not any(secret in text for secret in ALL)


@pytest.mark.parametrize(
    "text",
    [
        f"slurm+http://alice:{PASSWORD}@127.0.0.1:6820/?token={TOKEN}&partition=debug",
        f"ray+https://h:8265?headers=%7B%22Authorization%22%3A%22{TOKEN}%22%7D",
        f"Authorization: Bearer {JWT}",
        f"the JWT {JWT} expired",
        f"InvalidClientTokenId: The security token included in the request is invalid ({AWS_ID})",
        f"aws_secret_access_key = {AWS_SECRET}",
        f"a bare {AWS_SECRET} key",
        f'{{"password": "{PASSWORD}", "user": "alice"}}',
        f"SLURM_JWT={JWT} srun ...",
        f"API_TOKEN={TOKEN} MY_SECRET={PASSWORD}",
        f"x-slurm-user-token: {TOKEN}",
    ],
)
def test_redact_masks_every_form(text: str) -> None:
    out = redact(text)
    assert _clean(out), out
    assert "***" in out


def test_redact_keeps_ordinary_text() -> None:
    for text in (
        "sort key: priority",
        "job 0123456789abcdef0123456789abcdef01234567 not found",
        "status == failed and priority < 50",
        "where.created_at: 0001-01-01T00:00:00+05:00 is out of range in UTC",
    ):
        assert redact(text) == text


def test_secret_names_rule() -> None:
    for name in ("API_TOKEN", "aws_secret_access_key", "DB_PASSWORD", "SSH_KEY", "github_auth", "COOKIE_JAR"):
        assert is_secret_name(name), name
    for name in ("PATH", "HOME", "FRAMES", "RENDER_LAYER"):
        assert not is_secret_name(name), name


def test_jobspec_repr_shows_no_env_value_and_no_secret_option() -> None:
    spec = JobSpec(
        command=["render"],
        env={"API_TOKEN": TOKEN, "PATH": f"/opt/{PASSWORD}", "AWS_SECRET_ACCESS_KEY": AWS_SECRET},
        options={"api_key": TOKEN, "account": "fx"},
        parameters={"DbPassword": PASSWORD, "Frames": "1-10"},
    )
    for text in (repr(spec), str(spec), f"{spec}", repr([spec])):
        assert _clean(text), text
        assert "API_TOKEN" in text and "'account': 'fx'" in text and "'Frames': '1-10'" in text
    # the values are all still there for the drivers
    assert spec.env["API_TOKEN"] == TOKEN


def test_secret_wrapper() -> None:
    s = Secret(TOKEN)
    for text in (repr(s), str(s), f"{s}", f"{s!r}", repr({"token": s}), "{}".format(s)):  # noqa: UP032
        assert _clean(text), text
    assert s.reveal() == TOKEN
    assert s == Secret(TOKEN) and s != Secret("other")
    assert pickle.loads(pickle.dumps(s)).reveal() == TOKEN
    with pytest.raises(TypeError):
        hash(s)
    with pytest.raises(aiofarm.InvalidSpec):
        Secret(5)  # type: ignore[arg-type]


def test_client_repr_masks_url_secrets() -> None:
    farm = Client(f"slurm+http://alice:{PASSWORD}@127.0.0.1:1/?token={TOKEN}")
    assert _clean(repr(farm)) and _clean(str(farm))
    farm = Client("ray+http://127.0.0.1:1", token=Secret(TOKEN))
    assert _clean(repr(farm))


def test_errors_mask_secrets() -> None:
    errors: list[aiofarm.FarmError] = [
        aiofarm.BackendError("slurm", 401, f"token {TOKEN!r} rejected: Authorization: Bearer {JWT}"),
        aiofarm.AuthError(f"The security token included in the request is invalid: {AWS_ID}"),
        aiofarm.ConnectionLost(f"cannot reach http://u:{PASSWORD}@host/?token={TOKEN}"),
        aiofarm.InvalidSpec("url", f"slurm+http://h?token={TOKEN} is odd"),
        aiofarm.FarmError(f"SLURM_JWT={JWT}"),
    ]
    for exc in errors:
        for text in (str(exc), repr(exc), " ".join(map(str, exc.args))):
            assert _clean(text), text
    backend = errors[0]
    assert isinstance(backend, aiofarm.BackendError) and _clean(backend.message)


def test_invalid_env_value_is_not_echoed() -> None:
    with pytest.raises(aiofarm.InvalidSpec) as info:
        from aiofarm.validation import validate_spec

        validate_spec(JobSpec(command=["x"], env={"API_TOKEN": TOKEN + "\x00"}), "spec")
    assert TOKEN not in str(info.value)


def test_log_records_are_redacted(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("aiofarm.watch")
    with caplog.at_level(logging.DEBUG, logger="aiofarm"):
        log.warning("poll failed: %s", f"GET http://u:{PASSWORD}@h/jobs?token={TOKEN}")
        log.error("auth: Bearer %s", JWT)
        other = logging.getLogger("aiofarm.reliability-test")
        install_log_filter(other)
        other.info("env API_TOKEN=%s", TOKEN)
    assert len(caplog.records) == 3
    for record in caplog.records:
        assert _clean(record.getMessage()), record.getMessage()


async def _open_fails(url: str, **options: object) -> aiofarm.FarmError:
    with pytest.raises(aiofarm.FarmError) as info:
        async with Client(url, **options) as farm:  # type: ignore[arg-type]
            await farm.jobs.count()
    return info.value


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("url", "options"),
    [
        (f"slurm+http://127.0.0.1:9/?token={TOKEN}&timeout=2", {}),
        ("slurm+http://127.0.0.1:9/?timeout=2", {"token": Secret(TOKEN)}),
        (f"ray+http://127.0.0.1:9?token={TOKEN}&timeout=2", {}),
    ],
)
async def test_a_failing_back_end_does_not_echo_its_token(
    url: str, options: dict[str, object], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="aiofarm"):
        exc = await _open_fails(url, **options)
    texts = [str(exc), repr(exc), *(r.getMessage() for r in caplog.records)]
    cause = exc.__cause__ or exc.__context__
    if cause is not None:
        texts.append(str(cause))
    for text in texts:
        assert _clean(text), text


@pytest.mark.anyio
async def test_env_secret_never_reaches_local_records(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A job run with secrets in its env: the Job, its listing and every log record of
    the client hold no value (the job's own output is the user's business)."""
    with caplog.at_level(logging.DEBUG, logger="aiofarm"):
        async with Client(f"local://{tmp_path}/state") as farm:
            job = await farm.jobs.start(["true"], env={"API_TOKEN": TOKEN, "DB_PASSWORD": PASSWORD})
            result = await farm.jobs.wait(job.id, timeout=30)
            assert result.status is aiofarm.JobStatus.SUCCEEDED
            async with farm.jobs.list() as it:
                listed = [j async for j in it]
    texts = [repr(job), repr(result), repr(listed), *(r.getMessage() for r in caplog.records)]
    for text in texts:
        assert _clean(text), text[:300]
