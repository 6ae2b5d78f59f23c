"""The client/driver cut, checked statically: every ``import`` in ``aiofarm/`` is read
with :mod:`ast` (module level, inside functions and methods, under ``if TYPE_CHECKING:``
too), so a lazy import cannot hide a dependency.

The layers:

- **drivers**: every module under ``aiofarm/drivers/`` except ``base.py`` (the driver
  interface) and ``childproc.py`` (the one child-process module drivers share). A driver
  imports its own package and, of the rest of aiofarm, only ``models``, ``errors``,
  ``drivers/base``, ``drivers/childproc``, ``openjd/`` and the pure filter modules
  ``where/fields``, ``where/nodes`` and ``where/native``. Those three are allowed because
  translating ``ListQuery.where`` into a back end's own filter (SQL, SearchJobs filter
  expressions, query parameters) means walking the expression tree and splitting off what
  the back end can do; they hold data and pure functions over ``models`` and ``errors``
  only, import nothing else of aiofarm (checked below), and the ``where`` package's
  ``builder``/``parser`` (the user-facing ``where`` object and the text parser) stay out.
  A client-side driver module makes one attempt per call: it never imports ``backoff``
  or ``retry``. The local farm's own modules (``LOCAL_FARM_BACKEND``: the back end that
  ships in aiofarm, not a client of one) may use the one back-off for their background
  work.
- **client layer**: everything else in ``aiofarm/`` except the command line (``cli/``), an
  application on top of the library. The client layer imports no driver module: drivers
  are found through the ``aiofarm.drivers`` entry points, and reached through
  ``drivers/base``. Naming a driver module in a string (an import path) counts too.
- **cli/**: like the client layer, except a back-end-specific command group may import its
  own driver (listed in ``CLI_DRIVER_IMPORTS``).

Also: no import cycle among aiofarm's modules at run time (``TYPE_CHECKING`` imports do
not run and are left out; lazy imports inside functions are in), no ``importlib``
imports by name outside ``aiofarm/__init__.py`` (its lazy public names), no file over
650 lines, every public name exported exactly once from ``aiofarm/__init__.py``, no
status called by one or two letters, no module importing or reaching into another's
private (``_``) names, and no comment about who wrote or owns a file
(names and comments say what a thing is).
"""

from __future__ import annotations

import ast
import functools
import importlib
import io
import re
import tokenize
from collections.abc import Iterator
from pathlib import Path

import attrs

import aiofarm

ROOT = Path(aiofarm.__file__).resolve().parent
MAX_LINES = 650

#: what a driver may import outside its own package (module names or package prefixes)
DRIVER_MAY_IMPORT = (
    "aiofarm.models",
    "aiofarm.errors",
    "aiofarm.drivers.base",
    "aiofarm.drivers.childproc",
    "aiofarm.openjd",
    "aiofarm.where.fields",
    "aiofarm.where.nodes",
    "aiofarm.where.native",
)
#: modules of the driver-interface side of aiofarm/drivers/ (not drivers themselves)
DRIVER_INTERFACE = ("aiofarm.drivers", "aiofarm.drivers.base", "aiofarm.drivers.childproc")
#: the pure filter modules drivers may read: they must import nothing but these
PURE_FILTER_MAY_IMPORT = ("aiofarm.models", "aiofarm.errors", "aiofarm.where.fields", "aiofarm.where.nodes")

#: back-end command groups of the CLI and the one driver each may import
CLI_DRIVER_IMPORTS = {
    "aiofarm.cli.farm": "aiofarm.drivers.local",
    # ls/status on a local farm: the service's plain requests without a Client (speed)
    "aiofarm.cli.quick": "aiofarm.drivers.local",
    "aiofarm.cli.deadline": "aiofarm.drivers.deadline",
}

#: The local farm is a back end that ships inside aiofarm, as slurmctld ships with
#: Slurm: its service process (or, with ``?embedded=true``, the client's own process)
#: schedules the jobs, runs them and commits their state to SQLite. These modules are
#: that back end, not a client of one. The one-attempt rule below is about clients
#: (a driver call that retried inside would multiply with aiofarm/retry.py's
#: attempts); the farm's own background work is no driver call, and may wait to try
#: again with the one back-off: the state writer keeps changes the disk refused and
#: commits them once it takes them again (a caller meanwhile gets StateError at
#: once). The modules the client side of ``local://`` is made of (the service's
#: socket, its wire format, its streams) are not here, and a test checks that.
LOCAL_FARM_BACKEND = frozenset(
    {
        "aiofarm.drivers.local.admin",
        "aiofarm.drivers.local.control",
        "aiofarm.drivers.local.embedded",
        "aiofarm.drivers.local.model",
        "aiofarm.drivers.local.processes",
        "aiofarm.drivers.local.queries",
        "aiofarm.drivers.local.scheduler",
        "aiofarm.drivers.local.service",
        "aiofarm.drivers.local.sessions",
        "aiofarm.drivers.local.store",
        "aiofarm.drivers.local.submit",
        "aiofarm.drivers.local.writer",
    }
)
#: what the local farm's own modules may import besides what a driver may: the one
#: back-off, for the farm's background work (see LOCAL_FARM_BACKEND)
BACKEND_MAY_IMPORT = ("aiofarm.backoff",)
#: modules still naming statuses by one or two letters (``P = JobStatus.PENDING``)
SHORT_ALIAS_EXEMPT: frozenset[str] = frozenset()
#: modules still carrying a comment about who wrote or owns code
AUTHORSHIP_EXEMPT: frozenset[str] = frozenset()
#: modules still importing another module's private names
PRIVATE_IMPORT_EXEMPT: frozenset[str] = frozenset()
#: files still over MAX_LINES, being split by their own work
SIZE_EXEMPT: frozenset[str] = frozenset()


@attrs.frozen
class Import:
    importer: str  # module name
    target: str  # module name (an aiofarm module, or the external top-level package)
    line: int
    type_only: bool  # under `if TYPE_CHECKING:`

    def __str__(self) -> str:
        where = " (TYPE_CHECKING)" if self.type_only else ""
        return f"{self.importer}:{self.line} imports {self.target}{where}"


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@functools.cache
def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _resolve(importer: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    parts = importer.split(".")
    if not is_package:
        parts.pop()
    if node.level > 1:
        parts = parts[: len(parts) - (node.level - 1)]
    base = ".".join(parts)
    return f"{base}.{node.module}" if node.module else base


def _walk(node: ast.AST, type_only: bool) -> Iterator[tuple[ast.AST, bool]]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            for stmt in child.body:
                yield stmt, True
                yield from _walk(stmt, True)
            for stmt in child.orelse:
                yield stmt, type_only
                yield from _walk(stmt, type_only)
            continue
        yield child, type_only
        yield from _walk(child, type_only)


@functools.cache
def imports_of(name: str) -> tuple[Import, ...]:
    path = modules()[name]
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    return tuple(_imports_in(name, tree, is_package=path.name == "__init__.py"))


def _imports_in(name: str, tree: ast.Module, *, is_package: bool) -> list[Import]:
    known = modules()
    found: list[Import] = []
    for node, type_only in _walk(tree, False):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.append(Import(name, alias.name, node.lineno, type_only))
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(name, is_package, node)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                # `from pkg import mod` imports the submodule; `from mod import name` the module
                found.append(Import(name, sub if sub in known else base, node.lineno, type_only))
    return found


def aiofarm_imports(name: str) -> Iterator[Import]:
    for imp in imports_of(name):
        if imp.target == "aiofarm" or imp.target.startswith("aiofarm."):
            yield imp


def _within(name: str, prefixes: tuple[str, ...] | str) -> bool:
    if isinstance(prefixes, str):
        prefixes = (prefixes,)
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def is_driver(name: str) -> bool:
    return _within(name, "aiofarm.drivers") and name not in DRIVER_INTERFACE


def driver_package(name: str) -> str:
    return ".".join(name.split(".")[:3])  # aiofarm.drivers.<back end>


def test_the_scan_sees_the_tree() -> None:
    # guard against a scan that finds nothing and so passes everything
    names = modules()
    assert {"aiofarm.client", "aiofarm.jobs", "aiofarm.drivers.base", "aiofarm.openjd.plan"} <= set(names)
    assert any(is_driver(n) for n in names)
    lazy = [i for i in imports_of("aiofarm.jobs") if i.target == "aiofarm.openjd.loading"]
    assert lazy, "the lazy import inside Jobs.submit_bundle must be seen"
    typed = [i for i in imports_of("aiofarm.jobs") if i.target == "aiofarm.client"]
    assert typed and all(i.type_only for i in typed)


def is_client_side_driver(name: str) -> bool:
    """A driver module that speaks to a back end for the client (every driver module
    but the local farm's own, see LOCAL_FARM_BACKEND)."""
    return is_driver(name) and name not in LOCAL_FARM_BACKEND


def test_drivers_import_only_the_interface_and_shared_modules() -> None:
    bad = []
    for name in modules():
        if not is_driver(name):
            continue
        own = driver_package(name)
        allowed = DRIVER_MAY_IMPORT if is_client_side_driver(name) else DRIVER_MAY_IMPORT + BACKEND_MAY_IMPORT
        for imp in aiofarm_imports(name):
            if not (_within(imp.target, own) or _within(imp.target, allowed)):
                bad.append(str(imp))
    assert not bad, "drivers reach past the interface:\n" + "\n".join(bad)


def test_the_local_farm_backend_is_named_precisely() -> None:
    names = modules()
    assert set(names) >= LOCAL_FARM_BACKEND, sorted(LOCAL_FARM_BACKEND - set(names))
    # what a client of the farm service runs is client side: it makes one attempt
    for client_side in ("client", "connect", "wire", "follow", "streams", "tunnel"):
        assert is_client_side_driver(f"aiofarm.drivers.local.{client_side}")
    # only the local farm ships its back end in aiofarm
    assert all(_within(n, "aiofarm.drivers.local") for n in LOCAL_FARM_BACKEND)


#: the back-off and retry modules of the client layer: a driver makes one attempt per
#: call and never waits to try again (aiofarm/retry.py retries for every driver)
RETRY_MODULES = ("aiofarm.backoff", "aiofarm.retry")


def retry_violations(name: str, source: str) -> list[str]:
    """Where module ``name`` (its text ``source``) retries or backs off on its own."""
    tree = ast.parse(source)
    bad = [
        str(imp)
        for imp in _imports_in(name, tree, is_package=False)
        if _within(imp.target, RETRY_MODULES)
    ]
    for node in ast.walk(tree):
        named = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else ""
        if named in ("retry_transient", "Backoff"):
            bad.append(f"{name}:{getattr(node, 'lineno', 0)} uses {named}")
    return bad


def test_no_driver_retries_or_backs_off() -> None:
    bad = []
    for name, path in modules().items():
        if is_client_side_driver(name):
            bad += retry_violations(name, path.read_text(encoding="utf-8"))
    assert not bad, "a driver makes one attempt; the client layer retries:\n" + "\n".join(bad)


def test_the_retry_rule_catches_a_planted_violation() -> None:
    # the local service client as it was before the Hub owned its event stream
    planted = (
        "from ...backoff import Backoff\n"
        "async def events(self):\n"
        "    backoff = Backoff(0.05, 2.0)\n"
        "    while True:\n"
        "        await backoff.sleep()\n"
    )
    found = retry_violations("aiofarm.drivers.local.client", planted)
    assert any("imports aiofarm.backoff" in b for b in found) and any("uses Backoff" in b for b in found)
    assert is_client_side_driver("aiofarm.drivers.local.client")
    lazy = "async def get(self):\n    from aiofarm.retry import retrying\n    from aiofarm.backoff import retry_transient\n"
    assert len(retry_violations("aiofarm.drivers.slurm.http", lazy)) == 2
    # the farm's own state writer backs off, and it is no client of a back end
    writer = modules()["aiofarm.drivers.local.writer"]
    assert retry_violations("aiofarm.drivers.local.writer", writer.read_text(encoding="utf-8"))
    assert not is_client_side_driver("aiofarm.drivers.local.writer")


def test_pure_filter_modules_stay_pure() -> None:
    bad = []
    for name in ("aiofarm.where.fields", "aiofarm.where.nodes", "aiofarm.where.native"):
        for imp in aiofarm_imports(name):
            if not _within(imp.target, PURE_FILTER_MAY_IMPORT):
                bad.append(str(imp))
    assert not bad, "\n".join(bad)


def _names_a_driver(text: str) -> bool:
    head = text.split(":")[0]
    return is_driver(head) and head in modules()


def test_client_layer_imports_no_driver() -> None:
    bad = []
    for name, path in modules().items():
        if is_driver(name) or name in DRIVER_INTERFACE[1:]:
            continue
        allowed = CLI_DRIVER_IMPORTS.get(name)
        for imp in aiofarm_imports(name):
            if is_driver(imp.target) and not (allowed and _within(imp.target, allowed)):
                bad.append(str(imp))
        # an import path in a string is an import too (a registry beside the entry points)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and _names_a_driver(node.value):
                bad.append(f"{name}:{node.lineno} names driver module {node.value!r}")
    assert not bad, "the client layer reaches into drivers:\n" + "\n".join(bad)


def test_no_dynamic_imports_outside_the_package_init() -> None:
    bad = []
    for name in modules():
        if name == "aiofarm":
            continue  # its lazy public names: `aiofarm.Client` imports aiofarm.client
        for imp in imports_of(name):
            if imp.target == "importlib" or (imp.target.startswith("importlib.") and imp.target != "importlib.metadata"):
                bad.append(str(imp))
    assert not bad, "\n".join(bad)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    out.append(sorted(component))
    return out


def runtime_graph() -> dict[str, set[str]]:
    known = modules()
    graph: dict[str, set[str]] = {name: set() for name in known}
    for name in known:
        for imp in aiofarm_imports(name):
            if not imp.type_only and imp.target in known and imp.target != name:
                graph[name].add(imp.target)
    return graph


def test_cycle_finder_finds_cycles() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert _cycles(graph) == [["a", "b", "c"]]


def test_no_import_cycles() -> None:
    cycles = _cycles(runtime_graph())
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_no_file_over_the_size_limit() -> None:
    bad = []
    for path in modules().values():
        lines = len(path.read_text(encoding="utf-8").splitlines())
        rel = str(path.relative_to(ROOT.parent))
        if lines > MAX_LINES and rel not in SIZE_EXEMPT:
            bad.append(f"{rel}: {lines} lines")
    assert not bad, f"split these by concern (limit {MAX_LINES}):\n" + "\n".join(bad)


def _init_tree() -> ast.Module:
    return ast.parse((ROOT / "__init__.py").read_text(encoding="utf-8"))


def test_every_public_name_is_exported_once() -> None:
    tree = _init_tree()
    lazy_node = next(
        n.value
        for n in tree.body
        if isinstance(n, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "_LAZY" for t in n.targets)
    )
    assert isinstance(lazy_node, ast.Dict)
    keys = [str(k.value) for k in lazy_node.keys if isinstance(k, ast.Constant)]
    # a repeated key in a dict literal is silently dropped: look at the source
    assert len(keys) == len(set(keys)) == len(lazy_node.keys), sorted(k for k in keys if keys.count(k) > 1)
    sources = {
        str(k.value): str(v.value)
        for k, v in zip(lazy_node.keys, lazy_node.values, strict=True)
        if isinstance(k, ast.Constant) and isinstance(v, ast.Constant)
    }

    # the TYPE_CHECKING imports (what type checkers see) name each public name once,
    # from the module _LAZY names
    typed: list[tuple[str, str]] = []
    for node, type_only in _walk(tree, False):
        if type_only and isinstance(node, ast.ImportFrom) and node.module != "typing":
            for alias in node.names:
                typed.append((alias.asname or alias.name, (node.module or "").split(".")[0]))
    typed_names = [n for n, _ in typed]
    assert sorted(typed_names) == sorted(set(typed_names))
    assert set(typed_names) == set(keys)
    assert all(sources[n] == module for n, module in typed)

    assert sorted(aiofarm.__all__) == sorted([*keys, "__version__"])
    assert len(aiofarm.__all__) == len(set(aiofarm.__all__))
    for name in keys:
        value = getattr(aiofarm, name)
        defined_in = getattr(value, "__module__", None)
        if isinstance(value, type) or callable(value):
            # defined in the module _LAZY names (or a module of that package)
            assert defined_in is not None and _within(defined_in, f"aiofarm.{sources[name]}"), (name, defined_in)
        assert importlib.import_module(f"aiofarm.{sources[name]}") is not None


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT.parent))


def test_no_one_or_two_letter_status_names() -> None:
    bad = []
    for path in modules().values():
        if _rel(path) in SHORT_ALIAS_EXEMPT:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Assign) or not isinstance(node.value, ast.Attribute):
                continue
            value = node.value.value
            if not (isinstance(value, ast.Name) and value.id == "JobStatus"):
                continue
            for target in node.targets:
                if isinstance(target, ast.Name) and len(target.id.strip("_")) <= 2:
                    bad.append(f"{_rel(path)}:{node.lineno}: {target.id} = JobStatus.{node.value.attr}")
    assert not bad, "say the status: JobStatus.PENDING, not an alias\n" + "\n".join(bad)


_AUTHORSHIP = re.compile(r"\bengineer'?s?\b|\bowned by the \w+ (?:engineer|helper|team)\b", re.I)


def test_no_comments_about_who_wrote_the_code() -> None:
    bad = []
    for path in modules().values():
        if _rel(path) in AUTHORSHIP_EXEMPT:
            continue
        source = path.read_text(encoding="utf-8")
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.COMMENT and _AUTHORSHIP.search(tok.string):
                bad.append(f"{_rel(path)}:{tok.start[0]}: {tok.string.strip()}")
    assert not bad, "comments say why, not who:\n" + "\n".join(bad)


def test_no_module_uses_another_modules_private_names() -> None:
    known = modules()
    bad = []
    for name, path in known.items():
        if name in PRIVATE_IMPORT_EXEMPT:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        bound: dict[str, str] = {}  # local name -> the aiofarm module it is
        for node, _ in _walk(tree, False):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name in known and alias.asname:
                        bound[alias.asname] = alias.name
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(name, path.name == "__init__.py", node)
                for alias in node.names:
                    private = alias.name.startswith("_") and not alias.name.startswith("__")
                    if private and _within(base, "aiofarm"):
                        bad.append(f"{name}:{node.lineno} imports {base}.{alias.name}")
                    if f"{base}.{alias.name}" in known:
                        bound[alias.asname or alias.name] = f"{base}.{alias.name}"
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in bound
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
            ):
                bad.append(f"{name}:{node.lineno} reaches {bound[node.value.id]}.{node.attr}")
    assert not bad, "a private name is its module's own:\n" + "\n".join(bad)
