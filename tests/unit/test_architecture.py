"""The package's shape, measured from its source (#33): no import cycle, and the MQTT sink known
only where the service is composed."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "streamd"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Every module's imports of other streamd modules: module level and inside functions,
    ``TYPE_CHECKING`` blocks included (a cycle there is still a knot in the design)."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found: set[str | None] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {resolve(a.name) for a in node.names if a.name.startswith("streamd")}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                    base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
                if base.startswith("streamd"):
                    found |= {resolve(f"{base}.{a.name}") or resolve(base) for a in node.names}
        graph[name] = {m for m in found if m is not None and m != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                other = stack.pop()
                component.append(other)
                if other == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_import_graph_has_no_cycle() -> None:
    graph = import_graph()
    assert len(graph) > 50 and "streamd.daemon" in graph["streamd.cli"] | graph["streamd.service.worker"]
    assert cycles(graph) == []


def test_a_cycle_would_be_found() -> None:
    """The detector itself: a planted knot is reported."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_only_the_composition_root_and_the_sinks_bench_know_the_mqtt_sink() -> None:
    importers = sorted(m for m, imports in import_graph().items() if "streamd.sinks.mqtt" in imports)
    assert importers == ["streamd.bench.sink", "streamd.daemon"], importers


def test_private_mqtt_internals_are_reached_from_one_module_that_checks_versions() -> None:
    import pytest

    from streamd.sinks.internals import check_versions

    check_versions({"aiomqtt": "2.5.1", "paho-mqtt": "2.2.0"})
    with pytest.raises(ImportError, match=r"found aiomqtt 3\.0\.0"):
        check_versions({"aiomqtt": "3.0.0", "paho-mqtt": "2.2.0"})
    with pytest.raises(ImportError, match="paho-mqtt missing"):
        check_versions({"aiomqtt": "2.5.1"})
    reaching = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in ("_client", "_sock"):
                base = node.value
                if not (isinstance(base, ast.Name) and base.id == "self"):
                    reaching.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert {r.split(":")[0] for r in reaching} == {"sinks/internals.py"}, reaching


def test_no_module_over_350_lines_and_the_daemon_composes_in_at_most_250() -> None:
    long = {
        str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > 350
    }
    assert long == {}, long
    tree = ast.parse((PACKAGE / "daemon.py").read_text())
    daemon = next(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == "Daemon")
    assert daemon.end_lineno is not None and daemon.end_lineno - daemon.lineno + 1 <= 250


def test_stages_are_told_apart_by_attributes_not_by_isinstance() -> None:
    contract = {"Stage", "SourceHandler", "Handler", "PerSource", "Starts", "Finishes", "WantsSkipped"}
    contract |= {"WantsPackets", "HearsTrackEnds", "EndsTracks"}
    found = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "isinstance":
                names = {n.id for n in ast.walk(node.args[1]) if isinstance(n, ast.Name)}
                if names & contract:
                    found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert found == []
