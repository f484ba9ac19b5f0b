"""The package's import structure: no cycles between its modules (imports inside functions
count too), and the entry point is imported by nothing but ``python -m taskset_lab``."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "taskset_lab"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The package modules ``path`` imports (``from a.b import c`` counts ``a.b.c`` when that is
    a module, else ``a.b``), leaving out ``if TYPE_CHECKING:`` blocks."""
    name = _module_name(path)
    is_package = path.name == "__init__.py"
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                continue
            if isinstance(child, ast.Import):
                found.update(a.name for a in child.names if a.name.split(".")[0] == "taskset_lab")
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = name.split(".") if is_package else name.split(".")[:-1]
                    anchor = anchor[: len(anchor) - (child.level - 1)]
                    base = ".".join([*anchor, *([base] if base else [])])
                if base.split(".")[0] != "taskset_lab":
                    continue
                for alias in child.names:
                    sub = f"{base}.{alias.name}"
                    found.add(sub if sub in modules else base)
            visit(child)

    visit(ast.parse(path.read_text()))
    return {m for m in found if m in modules and m != name}


def _graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {_module_name(p) for p in paths}
    return {_module_name(p): _imports(p, modules) for p in paths}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            part = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                part.append(w)
                if w == v:
                    break
            if len(part) > 1:
                out.append(sorted(part))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return out


def _without_packages(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """A package's ``__init__`` re-exports its modules; an import of the package from one of
    its own modules' dependencies is not a cycle of the code, so the edges into a package
    ``__init__`` from its own subtree are dropped."""
    packages = {m for m in graph if (PACKAGE.parent / m.replace(".", "/") / "__init__.py").is_file()}
    return {m: {d for d in deps if not (d in packages and m.startswith(d + "."))} for m, deps in graph.items()}


def test_the_graph_sees_real_imports():
    graph = _graph()
    assert "taskset_lab.engine.state" in graph["taskset_lab.engine.compiled"]
    assert "taskset_lab.cli" in graph["taskset_lab.__main__"]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles():
    assert _cycles(_without_packages(_graph())) == []


def test_nothing_but_the_entry_point_imports_the_cli():
    importers = sorted(m for m, deps in _graph().items() if "taskset_lab.cli" in deps)
    assert importers == ["taskset_lab.__main__"]


#: library packages: they take plain values and typed specs (the pipelines read the composed
#: config: taskset_lab.pipelines.building.read_spec / plain), so none may import Hydra or OmegaConf
LIBRARY_PACKAGES = ("curves", "data", "engine", "evaluate", "hparam_list", "optim", "replay", "tasks")


def test_libraries_take_plain_values_not_the_composed_config():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        name = _module_name(path)
        if name.split(".")[1:2] and name.split(".")[1] in LIBRARY_PACKAGES:
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    mods = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom):
                    mods = [node.module or ""]
                else:
                    continue
                if any(m.split(".")[0] in ("omegaconf", "hydra") for m in mods):
                    offenders.append(name)
    assert sorted(set(offenders)) == []


#: the engine's layers, lowest first: each module imports engine modules of lower layers only
ENGINE_LAYERS = ("state", "step", "population", "compiled", "driver")


def test_engine_modules_import_only_the_layers_below_them():
    graph = _graph()
    for i, layer in enumerate(ENGINE_LAYERS):
        engine_deps = {d.rsplit(".", 1)[1] for d in graph[f"taskset_lab.engine.{layer}"]
                       if d.startswith("taskset_lab.engine.")}
        assert engine_deps <= set(ENGINE_LAYERS[:i]), f"engine.{layer} imports {sorted(engine_deps)}"
    # the step the compiled path runs is the eager one: both import it, neither defines its own
    assert "taskset_lab.engine.step" in graph["taskset_lab.engine.population"]
    assert "taskset_lab.engine.step" in graph["taskset_lab.engine.compiled"]


def test_no_module_reaches_into_another_modules_private_names():
    """``from x import _name`` and ``obj._attr`` of another module's object are private access;
    the engine and optimizer packages use each other's public names only."""
    offenders = []
    for path in sorted((PACKAGE / "engine").glob("*.py")) + sorted((PACKAGE / "optim").glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("taskset_lab"):
                offenders += [f"{path.name}: {a.name}" for a in node.names
                              if a.name.startswith("_") and not a.name.startswith("__")]
            elif isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
                owner = node.value
                if not (isinstance(owner, ast.Name) and owner.id in ("self", "cls")):
                    offenders.append(f"{path.name}:{node.lineno}: .{node.attr}")
    assert offenders == []
