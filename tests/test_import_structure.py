"""The package's import structure: no cycles between vqsa modules (imports inside functions count too; imports
for type checking only, and a module's ``__getattr__`` serving deprecated names, do not), and imports point down
the layers."""
import ast
from pathlib import Path

import pytest

import vqsa

ROOT = Path(vqsa.__file__).parent
# Layers from the bottom: a module may import its own layer and the ones below, never one above.
LAYERS = [
    ("vqsa.version", "vqsa.utils", "vqsa.metrics"),
    ("vqsa.corruptions", "vqsa.layers"),
    ("vqsa.models", "vqsa.data"),
    ("vqsa.train", "vqsa.eval", "vqsa.analysis"),
    ("vqsa.demo",),
    ("vqsa.cli", "vqsa.__main__"),
]


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _imports(name: str) -> set[str]:
    """The vqsa modules ``name`` imports, anywhere in its body except under ``if TYPE_CHECKING:``."""
    path = MODULES[name]
    tree = ast.parse(path.read_text())
    typing_only = {id(n) for node in ast.walk(tree)
                   if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
                   for n in ast.walk(node)}
    typing_only |= {id(n) for node in tree.body
                    if isinstance(node, ast.FunctionDef) and node.name == "__getattr__" for n in ast.walk(node)}
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.update(f"{module}.{a.name}" if f"{module}.{a.name}" in MODULES else module for a in node.names)
    resolved = set()
    for target in found:
        while target not in MODULES and "." in target:
            target = target.rsplit(".", 1)[0]
        if target in MODULES and target != name:
            resolved.add(target)
    return resolved


GRAPH = {name: _imports(name) for name in MODULES}


def _cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    return out


def _layer(name: str) -> int | None:
    for i, prefixes in enumerate(LAYERS):
        if any(name == p or name.startswith(p + ".") for p in prefixes):
            return i
    return None


def test_the_import_graph_sees_function_local_imports():
    assert "vqsa.models._factory" in GRAPH["vqsa.models.checkpoint"]
    assert "vqsa.eval.report" in GRAPH["vqsa.eval.results"]
    assert "vqsa.eval.results" not in GRAPH["vqsa.eval.plots"]  # a type-checking import only


def test_no_import_cycles():
    assert _cycles() == []


def test_imports_point_down_the_layers():
    up = [f"{a} -> {b}" for a, targets in GRAPH.items() for b in targets
          if _layer(a) is not None and _layer(b) is not None and _layer(b) > _layer(a)]
    assert up == []


def test_a_name_moved_down_the_layers_is_still_served_with_a_warning():
    from vqsa.corruptions import dataset_writer
    from vqsa.data import corrupt_cifar10

    with pytest.warns(DeprecationWarning, match="moved to vqsa.data.corrupt_cifar10"):
        assert dataset_writer.corrupt_cifar10 is corrupt_cifar10


def test_every_module_has_a_layer():
    assert [m for m in MODULES if m != "vqsa" and _layer(m) is None] == []
