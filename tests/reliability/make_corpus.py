"""Writes the bad-input corpus (tests/reliability/corpus/*.jsonl) from compact tables.

The corpus is data: each line is one case, read by test_corpus.py. This script only
saves typing; run it after editing a table (``python tests/reliability/make_corpus.py``)
and commit the files it writes. Tagged values (``{"$dt": ...}``, ``{"$big": [c, n]}``,
...) are decoded by ``tests/reliability/corpus_values.py``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

OUT = Path(__file__).parent / "corpus"

SURROGATE = "\ud800"
NUL = "a\x00b"
HUGE = {"$big": ["x", 2_000_000]}  # over every text length limit
BAD_TEXT: list[tuple[str, Any]] = [("surrogate", SURROGATE), ("nul", NUL), ("huge", HUGE), ("int", 5)]
BAD_ID: list[tuple[str, Any]] = [*BAD_TEXT, ("empty", ""), ("lone low surrogate", "j\udfff"), ("bytes", {"$bytes": "j1"})]
BAD_COUNT: list[tuple[str, Any]] = [
    ("2**64", 2**64), ("30 nines", int("9" * 30)), ("-1", -1), ("inf", {"$float": "inf"}),
    ("nan", {"$float": "nan"}), ("float", 1.5), ("bool", True), ("str", "3"),
]
BAD_SECONDS: list[tuple[str, Any]] = [("-1", -1), ("nan", {"$float": "nan"}), ("-inf", {"$float": "-inf"}), ("str", "5"), ("bool", True), ("2**1100", 2**1100)]
BAD_DATES: list[tuple[str, Any]] = [
    ("naive", {"$naive": "2020-01-01T00:00:00"}),
    ("year 1 east", {"$dt": "0001-01-01T00:00:00+05:00"}),
    ("year 9999 west", {"$dt": "9999-12-31T23:59:59-01:00"}),
    ("str", "2020-01-01"),
    ("int", 1600000000),
]

cases: dict[str, list[dict[str, Any]]] = {}


def add(group: str, name: str, call: str, *, args: list[Any] | None = None, kwargs: dict[str, Any] | None = None,
        field: str = "", error: str = "InvalidSpec", drivers: list[str] | None = None, **extra: Any) -> None:
    case: dict[str, Any] = {"name": name, "call": call, "args": args or [], "kwargs": kwargs or {},
                            "error": error, "field": field}
    if drivers:
        case["drivers"] = drivers
    case.update(extra)
    cases.setdefault(group, []).append(case)


# -- jobs.start and jobs.submit: every text field -----------------------------------
START_TEXT = {
    "name": lambda v: {"name": v},
    "description": lambda v: {"description": v},
    "cwd": lambda v: {"cwd": v},
    "pool": lambda v: {"pool": v},
    "tags[0]": lambda v: {"tags": [v]},
    "env": lambda v: {"env": {"$map": [[v, "1"]]}},
    "env['A']": lambda v: {"env": {"A": v}},
    "id": lambda v: {"id": v},
    "depends_on[0]": lambda v: {"depends_on": [v]},
}
for field, make in START_TEXT.items():
    for label, value in BAD_TEXT:
        if field == "env['A']" and label == "huge":
            continue  # a size limit per back end: in the exec-size group
        add("spec_text", f"start {field} {label}", "jobs.start", args=[["true"]], kwargs=make(value), field=field)
        add("spec_text", f"submit {field} {label}", "jobs.submit",
            args=[[{"$spec": {"command": ["true"], **make(value)}}]], field=f"specs[0].{field}")
for label, value in BAD_TEXT:
    add("spec_text", f"start argv[0] {label}", "jobs.start", args=[[value, "x"]], field="command[0]",
        drivers=["local"] if label == "huge" else None)
    if label != "huge":
        add("spec_text", f"start argv[1] {label}", "jobs.start", args=[["echo", value]], field="command[1]")
    if label not in ("int", "huge"):
        add("spec_text", f"start shell {label}", "jobs.start", args=[f"echo {value}"], field="command")
for label, value in BAD_TEXT:  # labels (Kubernetes syntax): bad keys and bad values
    add("spec_text", f"submit label key {label}", "jobs.submit",
        args=[[{"$spec": {"command": ["true"], "labels": {"$map": [[value, "v"]]}}}]], field="specs[0].labels")
    add("spec_text", f"submit label value {label}", "jobs.submit",
        args=[[{"$spec": {"command": ["true"], "labels": {"team": value}}}]], field="specs[0].labels")
    add("filters", f"list where labels {label}", "jobs.list",
        kwargs={"where": {"$concat": ['labels["team"] == "', value if isinstance(value, str) else str(value), '"']}},
        field="where")
add("spec_text", "submit second spec surrogate name", "jobs.submit",
    args=[[{"$spec": {"command": ["true"]}}, {"$spec": {"command": ["true"], "name": SURROGATE}}]],
    field="specs[1].name")

# -- numbers in a spec --------------------------------------------------------------
SPEC_NUMBERS = {
    "priority": lambda v: {"priority": v},
    "retries": lambda v: {"retries": v},
    "timeout": lambda v: {"timeout": v},
    "resources.cpu": lambda v: {"resources": {"$resources": {"cpu": v}}},
    "resources.memory_mb": lambda v: {"resources": {"$resources": {"memory_mb": v}}},
    "resources.gpu": lambda v: {"resources": {"$resources": {"gpu": v}}},
}
for field, make in SPEC_NUMBERS.items():
    for label, value in BAD_COUNT:
        if field in ("timeout", "resources.cpu") and label == "float":
            continue  # a fraction is fine there
        add("spec_numbers", f"start {field} {label}", "jobs.start", args=[["true"]], kwargs=make(value), field=field)
for field in ("max_failed_tasks", "max_workers"):
    for label, value in BAD_COUNT:
        add("spec_numbers", f"submit {field} {label}", "jobs.submit",
            args=[[{"$spec": {"command": ["true"], field: value}}]], field=f"specs[0].{field}")

# -- sizes the back end cannot take (local: ARG_MAX and MAX_ARG_STRLEN) ---------------
add("exec_size", "env value 10 MB", "jobs.start", args=[["true"]], kwargs={"env": {"A": {"$big": ["x", 10_000_000]}}},
    field="env", drivers=["local"])
add("exec_size", "argument 10 MB", "jobs.start", args=[["echo", {"$big": ["x", 10_000_000]}]], field="command",
    drivers=["local"])
add("exec_size", "argument 200 KB", "jobs.start", args=[["echo", {"$big": ["x", 200_000]}]], field="command",
    drivers=["local"])
add("exec_size", "env 40 values of 100 KB", "jobs.start", args=[["true"]],
    kwargs={"env": {f"V{i}": {"$big": ["y", 100_000]} for i in range(40)}}, field="env", drivers=["local"])
add("exec_size", "argv 40 args of 100 KB", "jobs.start", args=[["echo", *([{"$big": ["z", 100_000]}] * 40)]],
    field="command", drivers=["local"])
add("exec_size", "shell string 10 MB", "jobs.start", args=[{"$big": ["e", 10_000_000]}], field="command",
    drivers=["local"])
add("exec_size", "env name 200 KB", "jobs.start", args=[["true"]], kwargs={"env": {"$map": [[{"$big": ["K", 200_000]}, "1"]]}},
    field="env", drivers=["local"])

# -- every entry point that takes job ids ---------------------------------------------
ID_CALLS: dict[str, tuple[str, dict[str, Any], str]] = {
    "jobs.get": ("jobs.get", {}, "job_id"),
    "jobs.tasks": ("jobs.tasks", {}, "job_id"),
    "jobs.explain": ("jobs.explain", {}, "job_id"),
    "jobs.wait": ("jobs.wait", {}, "job_id"),
    "jobs.send_signal": ("jobs.send_signal", {}, "job_id"),
    "jobs.attach": ("jobs.attach", {}, "job_id"),
    "jobs.exec": ("jobs.exec", {"command": ["true"]}, "job_id"),
    "jobs.port_forward": ("jobs.port_forward", {"job_port": 80}, "job_id"),
    "logs.stream": ("logs.stream", {}, "job_id"),
    "logs.read": ("logs.read", {}, "job_id"),
    "logs.page": ("logs.page", {}, "job_id"),
}
for name, (call, kw, field) in ID_CALLS.items():
    for label, value in BAD_ID:
        add("ids", f"{name} {label}", call, args=[value], kwargs=kw, field=field)
MANY_ID_CALLS = ["jobs.get_many", "jobs.cancel", "jobs.pause", "jobs.resume", "jobs.retry", "jobs.delete",
                 "jobs.as_completed", "jobs.watch"]
for call in MANY_ID_CALLS:
    for label, value in BAD_ID:
        if label in ("int", "bytes"):
            add("ids", f"{call} {label}", call, args=[value], field="")
        else:
            add("ids", f"{call} [{label}]", call, args=[["ok-id", value]], field="[1]")
for label, value in BAD_ID:
    add("ids", f"jobs.update ids {label}", "jobs.update", args=[[value]], kwargs={"priority": 1}, field="ids[0]")

# -- updates -------------------------------------------------------------------------
for label, value in BAD_TEXT:
    add("update", f"update name {label}", "jobs.update", args=["x"], kwargs={"name": value}, field="name")
    add("update", f"update tag {label}", "jobs.update", args=["x"], kwargs={"tags": [value]}, field="tags")
for label, value in BAD_COUNT:
    add("update", f"update priority {label}", "jobs.update", args=["x"], kwargs={"priority": value}, field="priority")

# -- listing -------------------------------------------------------------------------
for kws, bad in ((("name", "pool", "since", "until"), None), (("tags", "owners"), "list")):
    for kw in kws:
        values = BAD_DATES if kw in ("since", "until") else BAD_TEXT
        for label, value in values:
            arg = [value] if bad == "list" else value
            for call in ("jobs.list",) if bad == "list" else ("jobs.list", "jobs.count"):
                add("listing", f"{call.split('.')[1]} {kw} {label}", call, kwargs={kw: arg}, field=kw)
for kw in ("limit", "page_size"):
    for label, value in BAD_COUNT:
        add("listing", f"list {kw} {label}", "jobs.list", kwargs={kw: value}, field=kw)
for label, value in [("surrogate", SURROGATE), ("nul", "a\x00"), ("int", 3), ("unknown", "sleeping")]:
    add("listing", f"list statuses {label}", "jobs.list", kwargs={"statuses": [value]}, field="statuses")
for label, value in [("surrogate", SURROGATE), ("unknown key", "colour"), ("int", 4), ("deep", {"$big": ["-", 5000]})]:
    add("listing", f"list sort {label}", "jobs.list", kwargs={"sort": value}, field="sort")

# -- the filter language ---------------------------------------------------------------
# an integer of any size is a valid bound in a filter (evaluated by the client where
# SQL cannot: tests/local/test_filtering.py), so none is here
FILTERS: list[tuple[str, Any, str]] = [
    ("300 nested parentheses", {"$big": ["(", 300], "$then": "status == failed" + ")" * 300}, "where"),
    ("10,000 not", {"$big": ["not ", 10_000], "$then": "status == failed"}, "where"),
    ("10,000 unclosed (", {"$big": ["(", 10_000]}, "where"),
    ("10,000 ~", {"$big": ["~", 10_000], "$then": "status == failed"}, "where"),
    ("1000 nested not-paren", {"$big": ["not (", 1000], "$then": "status == failed" + ")" * 1000}, "where"),
    ("date year 1 east", 'created_at > "0001-01-01T00:00:00+05:00"', "where.created_at"),
    ("date year 0001", 'created_at > "0001-01-01"', "where.created_at"),
    ("date 9999 west", 'created_at < "9999-12-31T23:59:59-01:00"', "where.created_at"),
    ("date garbage", 'started_at > "yesterday"', "where.started_at"),
    ("date year 10000", 'finished_at > "10000-01-01"', "where.finished_at"),
    ("priority inf", "priority < inf", "where.priority"),
    ("priority nan", "priority == nan", "where.priority"),
    ("surrogate value", f'name == "{SURROGATE}"', "where"),
    ("surrogate field", f"{SURROGATE} == 1", "where"),
    ("nul value", 'name == "a\x00b"', "where"),
    ("bad regex", 'name matches "("', "where.name"),
    ("huge regex", {"$big": ["(", 3000], "$then": "", "$wrap": 'name matches "{}"'}, "where"),
    ("unterminated string", 'name == "abc', "where"),
    ("empty", "", "where"),
    ("only spaces", "    ", "where"),
    ("lonely operator", "==", "where"),
    ("unknown field", "colour == red", "where.colour"),
    ("unknown status", "status == sleeping", "where.status"),
    ("operator not applicable", "tags < 5", "where.tags"),
    ("bang", "!status", "where"),
    ("dangling and", "status == failed and", "where"),
    ("in without list end", "status in (failed, ", "where"),
    ("10,000 chained or", {"$big": ["status == failed or ", 10_000], "$then": "status =="}, "where"),
    ("10 MB text", {"$big": ["x", 10_000_000]}, "where"),
    ("bytes", {"$bytes": "status == failed"}, "where"),
    ("int", 42, "where"),
]
for label, text, field in FILTERS:
    add("filters", f"list where {label}", "jobs.list", kwargs={"where": text}, field=field)
    add("filters", f"parse {label}", "where.parse", args=[text], field=field)
    add("filters", f"watch {label}", "jobs.watch", args=[{"$parse_in_call": text}], field=field)
add("filters", "~ applied 10,000 times", "where.build", args=[{"$invert": 10_000}], field="where")
add("filters", "& nested right 5,000 times", "where.build", args=[{"$nest_and_not": 5_000}], field="where")
add("filters", "where.created_at >= year 1 east", "where.build", args=[{"$compare": ["created_at", ">=", {"$dt": "0001-01-01T00:00:00+05:00"}]}], field="where.created_at")
add("filters", "where.priority < nan", "where.build", args=[{"$compare": ["priority", "<", {"$float": "nan"}]}], field="where.priority")
add("filters", "where.name == surrogate", "where.build", args=[{"$compare": ["name", "==", SURROGATE]}], field="where.name")

# -- logs ----------------------------------------------------------------------------------
for label, value in BAD_COUNT:
    add("logs", f"read tail {label}", "logs.read", args=["x"], kwargs={"tail": value}, field="tail")
    add("logs", f"page limit {label}", "logs.page", args=["x"], kwargs={"limit": value}, field="limit")
for label, value in BAD_TEXT:
    add("logs", f"page next_token {label}", "logs.page", args=["x"], kwargs={"next_token": value}, field="next_token")
    add("logs", f"page task {label}", "logs.page", args=["x"], kwargs={"task": value}, field="task")
    add("logs", f"stream task {label}", "logs.stream", args=["x"], kwargs={"task": value}, field="task")
    add("logs", f"stream streams {label}", "logs.stream", args=["x"], kwargs={"streams": [value]}, field="streams")
for kw in ("start_time", "end_time"):
    for label, value in BAD_DATES:
        add("logs", f"page {kw} {label}", "logs.page", args=["x"], kwargs={kw: value}, field=kw if kw == "end_time" else "")
for label, value in BAD_DATES:
    add("logs", f"stream since {label}", "logs.stream", args=["x"], kwargs={"since": value}, field="since")

# -- waiting, interactive ----------------------------------------------------------------
for label, value in BAD_SECONDS:
    add("waiting", f"wait timeout {label}", "jobs.wait", args=["x"], kwargs={"timeout": value}, field="timeout")
    add("waiting", f"wait max_interval {label}", "jobs.wait", args=["x"], kwargs={"max_interval": value}, field="max_interval")
    add("waiting", f"as_completed timeout {label}", "jobs.as_completed", args=[["x"]], kwargs={"timeout": value}, field="timeout")
    add("waiting", f"watch max_interval {label}", "jobs.watch", args=[["x"]], kwargs={"max_interval": value}, field="max_interval")
    for call, kw in (("jobs.attach", {}), ("jobs.exec", {"command": ["true"]}), ("jobs.port_forward", {"job_port": 80})):
        add("interactive", f"{call} start_timeout {label}", call, args=["x"], kwargs={**kw, "start_timeout": value},
            field="start_timeout")
for label, value in [("70000", 70000), ("-1", -1), ("2**64", 2**64), ("str", "80"), ("bool", True)]:
    add("interactive", f"port_forward job_port {label}", "jobs.port_forward", args=["x"], kwargs={"job_port": value}, field="job_port")
    add("interactive", f"port_forward local_port {label}", "jobs.port_forward", args=["x"],
        kwargs={"job_port": 80, "local_port": value}, field="local_port")
for label, value in [("surrogate", [SURROGATE]), ("nul", ["a\x00"]), ("empty", []), ("int", 5), ("huge", [{"$big": ["x", 10_000_000]}])]:
    add("interactive", f"exec command {label}", "jobs.exec", args=["x"], kwargs={"command": value}, field="command",
        drivers=["local"] if label == "huge" else None)
for label, value in [("negative", [-1, 80]), ("2**64", [2**64, 80]), ("str", ["a", "b"]), ("three", [1, 2, 3])]:
    add("interactive", f"exec size {label}", "jobs.exec", args=["x"], kwargs={"command": ["true"], "size": value}, field="size")
for label, value in [("2**64", 2**64), ("-1", -1), ("str", "TERM"), ("float", 1.5)]:
    add("interactive", f"send_signal {label}", "jobs.send_signal", args=["x", value], field="signal")

# -- pools and workers --------------------------------------------------------------------
for label, value in BAD_COUNT:
    add("pools", f"create slots {label}", "pools.create", args=["p"], kwargs={"slots": value}, field="slots")
for label, value in BAD_TEXT:
    add("pools", f"create name {label}", "pools.create", args=[value], kwargs={"slots": 1}, field="name")
    add("pools", f"get {label}", "pools.get", args=[value], field="pool")
    add("pools", f"rename new_name {label}", "pools.rename", args=["default", value], field="new_name")
    add("pools", f"delete {label}", "pools.delete", args=[value], field="pool")
for label, value in [*BAD_TEXT, ("catastrophic", "(a+)+$" + "(" * 1000)]:
    add("workers", f"list regex {label}", "workers.list", kwargs={"regex": value}, field="regex")
    add("workers", f"list names {label}", "workers.list", kwargs={"names": [value]}, field="names")

# -- opening a client ---------------------------------------------------------------------
CLIENTS: list[tuple[str, list[Any], dict[str, Any], str, list[str]]] = [
    ("slots 30 nines", ["local://{state}?slots=" + "9" * 30], {}, "options.slots", ["local"]),
    ("slots inf option", ["local://{state}"], {"slots": {"$float": "inf"}}, "options.slots", ["local"]),
    ("slots inf text", ["local://{state}?slots=inf"], {}, "options.slots", ["local"]),
    ("slots 2**64 option", ["local://{state}"], {"slots": 2**64}, "options.slots", ["local"]),
    ("cancel_grace 1e400", ["local://{state}?cancel_grace=1e400"], {}, "options.cancel_grace", ["local"]),
    ("idle_timeout nan", ["local://{state}?idle_timeout=nan"], {}, "options.idle_timeout", ["local"]),
    ("NUL in state dir", ["local://{state}/a%00b"], {}, "url", ["local"]),
    ("NUL in state_dir option", ["local://"], {"state_dir": "/tmp/a\x00b"}, "options.state_dir", ["local"]),
    ("surrogate in state_dir option", ["local://"], {"state_dir": "/tmp/\ud800"}, "options.state_dir", ["local"]),
    ("state dir path too long", [{"$concat": ["local://{state}/", {"$big": ["d", 5000]}]}], {}, "url", ["local"]),
    ("embedded garbage", ["local://{state}?embedded=maybe"], {}, "options.embedded", ["local"]),
    ("surrogate url", ["local://{state}/\ud800"], {}, "url", ["local"]),
    ("empty url", [""], {}, "url", ["local"]),
    ("url of int", [5], {}, "url", ["local"]),
    ("url bytes", [{"$bytes": "local://"}], {}, "url", ["local"]),
    ("unknown scheme", ["nope://x"], {}, "url", ["local"]),
    ("no scheme", ["just-text"], {}, "url", ["local"]),
    ("url 1 MB", [{"$big": ["u", 1_000_000]}], {}, "url", ["local"]),
    ("dummy push garbage", ["dummy://?push=maybe"], {}, "url", ["dummy"]),
    ("config.toml not UTF-8", [None], {}, "config", ["local"]),
    ("config.toml not TOML", [None], {}, "config", ["local"]),
    ("config.toml url int", [None], {}, "config.url", ["local"]),
    ("AIOFARM_URL bad slots", [None], {}, "options.slots", ["local"]),
]
CONFIGS = {
    "config.toml not UTF-8": {"$bytes_latin1": 'url = "local:///tmp/\xff\xfe"\n'},
    "config.toml not TOML": "url = = =\n",
    "config.toml url int": "url = 5\n",
}
for label, args, kw, field, drivers in CLIENTS:
    extra: dict[str, Any] = {}
    if label in CONFIGS:
        extra["config_toml"] = CONFIGS[label]
    if label.startswith("AIOFARM_URL"):
        extra["env"] = {"AIOFARM_URL": "local:///tmp/x?slots=0"}
    add("clients", label, "Client", args=args, kwargs=kw, field=field, drivers=drivers, **extra)

# -- functions -------------------------------------------------------------------------------
for label, value in BAD_COUNT:
    if label != "float":  # a fraction of a CPU is fine
        add("functions", f"create cpus {label}", "functions.create", args=[{"$callable": "len"}], kwargs={"cpus": value}, field="cpus")
    add("functions", f"create retries {label}", "functions.create", args=[{"$callable": "len"}], kwargs={"retries": value}, field="retries")
for label, value in BAD_TEXT:
    add("functions", f"create name {label}", "functions.create", args=[{"$callable": "len"}], kwargs={"name": value}, field="name")
    if label != "huge":  # a size the job's back end bounds when a call is submitted
        add("functions", f"create env value {label}", "functions.create", args=[{"$callable": "len"}], kwargs={"env": {"A": value}}, field="env")


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for old in OUT.glob("*.jsonl"):
        old.unlink()
    total = 0
    for group, items in cases.items():
        with open(OUT / f"{group}.jsonl", "w", encoding="utf-8") as f:
            for case in items:
                # ensure_ascii keeps lone surrogates and NULs as \u escapes: the files stay valid UTF-8
                f.write(json.dumps(case, ensure_ascii=True, allow_nan=False) + "\n")
        total += len(items)
    print(f"{total} cases in {len(cases)} files")


if __name__ == "__main__":
    main()
