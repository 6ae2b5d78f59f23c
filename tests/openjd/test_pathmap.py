"""Path mapping rules: matching, longest prefix, Windows/POSIX sources, the client API."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aiofarm.errors import InvalidSpec
from aiofarm.models import JobSpec, PathMappingRule
from aiofarm.pathmap import PathMapping, apply_rules, normalize_rule, prepare_spec, rules_document

WIN = PathMappingRule("windows", "Z:\\projects", "/mnt/projects")
WIN_DEEP = PathMappingRule("windows", "z:/projects/show1", "/fast/show1")
MAC = PathMappingRule("macos", "/Volumes/projects", "/mnt/projects")


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("Z:\\projects\\show2\\a.ma", "/mnt/projects/show2/a.ma"),
        ("z:/Projects/show2/a.ma", "/mnt/projects/show2/a.ma"),  # Windows: any case, either slash
        ("Z:\\projects\\show1\\b.ma", "/fast/show1/b.ma"),  # longest source wins
        ("Z:\\projects", "/mnt/projects"),
        ("Z:\\projectsX\\a", "Z:\\projectsX\\a"),  # component-wise, not string prefix
        ("/Volumes/projects/x/y.exr", "/mnt/projects/x/y.exr"),
        ("/volumes/projects/x", "/volumes/projects/x"),  # POSIX is case-sensitive
        ("relative/path", "relative/path"),
        ("Y:\\other", "Y:\\other"),
    ],
)
def test_apply_rules(path: str, expected: str) -> None:
    rules = [normalize_rule(r) for r in (WIN, WIN_DEEP, MAC)]
    assert apply_rules(rules, path) == expected


def test_unc_source() -> None:
    rule = normalize_rule(PathMappingRule("windows", "\\\\server\\share", "/mnt/share"))
    assert apply_rules([rule], "\\\\SERVER\\share\\a\\b.txt") == "/mnt/share/a/b.txt"


def test_bad_rules() -> None:
    with pytest.raises(InvalidSpec) as err:
        normalize_rule(PathMappingRule("amiga", "/x", "/y"))
    assert err.value.field == "path_mapping.source_os"
    with pytest.raises(InvalidSpec) as err2:
        normalize_rule(PathMappingRule("linux", "relative", "/y"))
    assert err2.value.field == "path_mapping.source"
    with pytest.raises(InvalidSpec) as err3:
        normalize_rule(PathMappingRule("windows", "projects", "/y"))
    assert err3.value.field == "path_mapping.source"


def test_client_add_list_remove() -> None:
    pm = PathMapping([WIN])
    added = pm.add("linux", "/old/root", "/new/root")
    assert added.source_os == "posix"
    assert pm.list() == (normalize_rule(WIN), added)
    assert pm.apply("/old/root/a") == "/new/root/a"
    # adding the same source again replaces it
    pm.add("linux", "/old/root/", "/newer/root")
    assert len(pm) == 2 and pm.apply("/old/root/a") == "/newer/root/a"
    removed = pm.remove("z:/PROJECTS")
    assert removed.source == "Z:\\projects"
    assert [r.source for r in pm] == ["/old/root/"]
    with pytest.raises(InvalidSpec):
        pm.remove("/nope")


def test_prepare_spec_maps_cwd_and_merges_rules() -> None:
    own = PathMappingRule("windows", "Z:\\projects\\show1", "/own/show1")
    spec = JobSpec(command=["true"], cwd="Z:\\projects\\show1\\shots", path_mapping=[own])
    out = prepare_spec(spec, [WIN])
    assert out.cwd == "/own/show1/shots"
    assert [r.destination for r in out.path_mapping] == ["/own/show1", "/mnt/projects"]
    plain = JobSpec(command=["true"], cwd="/here")
    assert prepare_spec(plain, ()) is plain


def test_rules_document_orders_most_specific_first(tmp_path: Path) -> None:
    doc = json.loads(rules_document([normalize_rule(WIN), normalize_rule(WIN_DEEP)]))
    assert [r["source_path"] for r in doc["path_mapping_rules"]] == ["z:/projects/show1", "Z:\\projects"]
    assert {r["source_path_format"] for r in doc["path_mapping_rules"]} == {"WINDOWS"}
