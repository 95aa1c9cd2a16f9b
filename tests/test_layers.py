"""The import structure: lower rooms never import higher ones, modules import no cycle,
and no source file or function outgrows the house limits.

Read with `ast`, not by importing, so a violation is found even in code no test runs
(imports inside functions and under TYPE_CHECKING count too).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("federation", "connectors")

# Rooms from low to high. A module may import its own room and any room of a lower layer;
# rooms in one layer do not import each other. `federation` is the package root (paths and
# version); `i18n` holds the catalogues of server-written texts that disclosure, search
# and the gateway name by key; `settings` reads the network file, so it sits above the
# disclosure policies it parses and below search, which builds its backend from it;
# `runtime` wires settings to the backend, the sync state and the search service for the
# entry points above it; `beacon` speaks the Beacon v2 protocol over the search service,
# and the gateway serves it; `requests` (access requests) checks consent through the
# search service and keeps its state in the store.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("federation", "errors", "faults", "sqlite_wal"),
    ("package_data",),
    ("model", "i18n"),
    ("consent", "disclosure"),
    ("settings",),
    ("state",),
    ("search",),
    ("beacon", "sync", "requests"),
    ("connectors",),
    ("demo",),
    ("runtime",),
    ("gateway",),
    ("launch",),
    ("cli", "gunicorn_conf"),
)
LAYER = {room: n for n, rooms in enumerate(LAYERS) for room in rooms}
# The rooms below search: what a question and a policy are made of.
LOWER_ROOMS = ("model", "consent", "disclosure")
NEVER_FROM_LOWER_ROOMS = ("search", "sync", "beacon", "gateway", "connectors", "demo")

MAX_LINES = 600
MAX_PARAMETERS = 6

# Offenders allowed for now: none. The tests fail on any offender not listed here, and on a
# listed one that no longer offends (delete its entry then), so the lists only shrink.
KNOWN_CYCLES: tuple[tuple[str, ...], ...] = ()
KNOWN_OVER_LIMITS: tuple[str, ...] = ()


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str
    line: int


def modules() -> dict[str, Path]:
    """Every module of the packages by dotted name."""
    out = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def room(module: str) -> str:
    """The room a module belongs to: `connectors`, or federation's first level."""
    parts = module.split(".")
    if parts[0] == "connectors":
        return "connectors"
    return parts[1] if len(parts) > 1 else "federation"


def imports(known: dict[str, Path]) -> Iterator[Import]:
    """Every import of one of our modules by another, resolved to the module imported."""
    for name, path in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                # `from a.b import c` imports the module a.b.c when there is one.
                targets = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                    for alias in node.names
                ]
            for target in targets:
                if target.split(".")[0] not in PACKAGES:
                    continue
                while target not in known and "." in target:
                    target = target.rpartition(".")[0]
                if target in known and target != name:
                    yield Import(name, target, node.lineno)


KNOWN = modules()
IMPORTS = list(imports(KNOWN))


def test_every_room_has_a_layer() -> None:
    rooms = {room(name) for name in KNOWN}
    assert rooms <= set(LAYER), f"rooms without a layer: {sorted(rooms - set(LAYER))}"


def test_no_room_imports_a_higher_or_sibling_room() -> None:
    upward = [
        f"{i.importer} (line {i.line}) imports {i.imported}: "
        f"{room(i.importer)} (layer {LAYER[room(i.importer)]}) -> "
        f"{room(i.imported)} (layer {LAYER[room(i.imported)]})"
        for i in IMPORTS
        if room(i.importer) != room(i.imported)
        and LAYER[room(i.imported)] >= LAYER[room(i.importer)]
    ]
    assert not upward, "imports against the layers:\n" + "\n".join(upward)


def test_the_lower_rooms_never_import_search_sync_gateway_connectors_or_demo() -> None:
    found = [
        f"{i.importer} imports {i.imported}"
        for i in IMPORTS
        if room(i.importer) in LOWER_ROOMS and room(i.imported) in NEVER_FROM_LOWER_ROOMS
    ]
    assert not found, "\n".join(found)


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle_between_modules() -> None:
    edges: dict[str, set[str]] = {}
    for i in IMPORTS:
        edges.setdefault(i.importer, set()).add(i.imported)
    found = {tuple(cycle) for cycle in cycles(edges)}
    new = [
        " -> ".join(cycle)
        + ": "
        + "; ".join(
            f"{i.importer} line {i.line} imports {i.imported}"
            for i in IMPORTS
            if i.importer in cycle and i.imported in cycle
        )
        for cycle in sorted(found - set(KNOWN_CYCLES))
    ]
    assert not new, "import cycles:\n" + "\n".join(new)
    gone = sorted(set(KNOWN_CYCLES) - found)
    assert not gone, f"no longer cycles, delete from KNOWN_CYCLES: {gone}"


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def parameters(function: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    """A function's parameters, `self` and `cls` not counted."""
    args = function.args
    names = [a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)]
    names += [f"*{a.arg}" for a in (args.vararg, args.kwarg) if a is not None]
    return [n for n in names if n not in ("self", "cls")]


def over_limits() -> dict[str, str]:
    """`module: lines` and `module.function: parameters` for everything over the limits,
    with how far over."""
    over = {}
    for name, path in KNOWN.items():
        text = path.read_text(encoding="utf-8")
        lines = len(text.splitlines())
        if lines > MAX_LINES:
            over[f"{name}: lines"] = f"{lines} lines"
        for node in ast.walk(ast.parse(text)):
            is_function = isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            if is_function and len(parameters(node)) > MAX_PARAMETERS:
                over[f"{name}.{node.name}: parameters"] = f"{len(parameters(node))} parameters"
    return over


def test_no_file_or_function_outgrows_the_limits() -> None:
    over = over_limits()
    new = [f"{key} ({over[key]})" for key in sorted(set(over) - set(KNOWN_OVER_LIMITS))]
    assert not new, f"over {MAX_LINES} lines or {MAX_PARAMETERS} parameters:\n" + "\n".join(new)
    gone = sorted(set(KNOWN_OVER_LIMITS) - set(over))
    assert not gone, f"within the limits now, delete from KNOWN_OVER_LIMITS: {gone}"


def test_the_search_and_lower_rooms_have_no_known_offender() -> None:
    mine = ("model", "consent", "disclosure", "search", "settings", "errors")
    listed = [*KNOWN_OVER_LIMITS, *(m for cycle in KNOWN_CYCLES for m in cycle)]
    assert not [entry for entry in listed if room(entry.split(":")[0]) in mine]
