"""The harness's layers: imports point down only, and no module imports itself back.

engine_conformance is six layers, bottom to top (README, "Developing"): base, engine,
catalogue, judge, reports, run. A module may import its own layer or one below.
"""

from __future__ import annotations

import ast

from engine_conformance.base.paths import PACKAGE

LAYERS = ["base", "engine", "catalogue", "judge", "reports", "run"]


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node but those under ``if TYPE_CHECKING:`` (annotations import nothing)."""
    nodes: list[ast.AST] = []
    todo = [tree]
    while todo:
        node = todo.pop()
        nodes.append(node)
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            todo.extend(node.orelse)
            continue
        todo.extend(ast.iter_child_nodes(node))
    return nodes


def _imports() -> dict[str, set[str]]:
    """Each module (``engine.target``) and the project modules it imports, anywhere in it."""
    found: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if len(parts) != 2 or parts[0] not in LAYERS or parts[1] == "__init__":
            continue
        names: set[str] = set()
        for node in _runtime_nodes(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                module = node.module.split(".")
                if module[0] == "engine_conformance" and len(module) == 2:
                    names.update(f"{module[1]}.{a.name}" for a in node.names)  # from layer import m
                elif module[0] == "engine_conformance" and len(module) >= 3:
                    names.add(".".join(module[1:3]))
        found[".".join(parts)] = names
    return found


def test_every_module_sits_in_a_layer():
    stray = [p.name for p in PACKAGE.glob("*.py") if p.stem not in ("__init__", "__main__")]
    assert not stray, f"modules outside the layers: {stray}"


def test_imports_point_down_the_layers():
    up = [
        f"{module} imports {name}"
        for module, names in _imports().items()
        for name in names
        if LAYERS.index(name.split(".")[0]) > LAYERS.index(module.split(".")[0])
    ]
    assert not up, "\n".join(up)


def test_no_import_cycle():
    graph = _imports()
    cycles: list[str] = []

    def visit(module: str, path: list[str]) -> None:
        for name in sorted(graph.get(module, ())):
            if name in path:
                cycles.append(" -> ".join([*path[path.index(name) :], name]))
            elif name in graph and name not in done:
                visit(name, [*path, name])
        done.add(module)

    done: set[str] = set()
    for module in sorted(graph):
        visit(module, [module])
    assert not cycles, "\n".join(sorted(set(cycles)))
