"""The package's import graph: no cycle, and data flows one way (no module imports a later stage).

Every import counts: top-level ones, those inside functions (lazy imports), those under `TYPE_CHECKING`,
relative ones (`from . import x`), and modules named as strings in a module that imports by name
(`importlib.import_module`). The checker is tested on a small synthetic package with a planted cycle and
a planted back-edge, so it cannot pass by finding nothing.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

#: Stages in data-flow order (data -> teacher -> label/distill -> predict/stream -> evaluate -> report).
#: A module may import its own stage or an earlier one. Rank 0 holds what every stage shares and that
#: imports no stage (errors, io and its records, progress, hardware, launch, the step runner, measures).
#: The orchestrators at the top (cli, commands, demo, reproduce, the viewer app) may import anything.
STAGES: dict[str, int] = {
    "errors": 0, "io": 0, "progress": 0, "hardware": 0, "launch": 0, "pipeline": 0, "measures": 0,
    "data": 1,
    "teacher": 2, "models": 2,
    "distill": 3,
    "stream": 4,
    "evaluate": 5,
    "report": 6,
    "viewer": 7, "demo": 7, "reproduce": 7, "commands": 7, "cli": 7, "__main__": 7, "": 7,
}


def module_files(src: Path, package: str) -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (file, is a package __init__) for every module of `package` under `src`."""
    out = {}
    for path in sorted((src / package).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_pkg else parts)] = (path, is_pkg)
    return out


def _calls_import_module(tree: ast.AST) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
            if name in ("import_module", "__import__"):
                return True
    return False


def import_graph(src: Path, package: str) -> dict[str, set[str]]:
    """Module -> the package's modules it imports, from every import statement anywhere in its file."""
    mods = module_files(src, package)
    graph: dict[str, set[str]] = {}
    for name, (path, is_pkg) in mods.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        here = name if is_pkg else name.rpartition(".")[0]
        found: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = here.split(".")[: len(here.split(".")) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                for alias in node.names:  # `from pkg import sub` imports the submodule pkg.sub
                    sub = f"{target}.{alias.name}"
                    found.add(sub if sub in mods else target)
        if _calls_import_module(tree):  # modules imported by name, e.g. a lazy-attribute table
            found.update(n.value for n in ast.walk(tree)
                         if isinstance(n, ast.Constant) and isinstance(n.value, str) and n.value in mods)
        graph[name] = {m for m in found if m in mods and m != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1 on the current path, 2 finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def stage_of(module: str, stages: dict[str, int]) -> int:
    """Rank of a module: that of its first component below the root package."""
    parts = module.split(".")
    key = parts[1] if len(parts) > 1 else ""
    if key not in stages:
        raise KeyError(f"{module}: its stage is not declared (add {key!r} to STAGES)")
    return stages[key]


def back_edges(graph: dict[str, set[str]], stages: dict[str, int]) -> list[str]:
    """Every import of a later stage, as 'a (stage i) -> b (stage j)'."""
    out = []
    for mod, targets in sorted(graph.items()):
        for target in sorted(targets):
            a, b = stage_of(mod, stages), stage_of(target, stages)
            if b > a:
                out.append(f"{mod} (stage {a}) -> {target} (stage {b})")
    return out


# ---------------------------------------------------------------------------------------------- the package
@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph(SRC, "echodfkd")


def test_the_graph_is_the_whole_package(graph):
    assert len(graph) > 100 and sum(map(len, graph.values())) > 300  # parsed, not an empty walk
    assert "echodfkd.measures.phases" in graph["echodfkd.distill.calibrate"]
    assert "echodfkd.stream.engines" in graph["echodfkd.stream.onnx_check"]   # an import inside a function...
    assert "echodfkd.distill.train" in graph["echodfkd.distill"]              # ...and a lazy one by name


def test_no_import_cycle(graph):
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph) or [])}"


def test_no_module_imports_a_later_stage(graph):
    assert back_edges(graph, STAGES) == []


def test_every_top_level_part_has_a_stage(graph):
    for mod in graph:
        stage_of(mod, STAGES)  # raises naming the undeclared part


# ----------------------------------------------------------------------- the checker fails on planted faults
def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_checker_finds_a_cycle_through_a_function_level_relative_import(tmp_path):
    _write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/data/__init__.py": "",
        "pkg/data/a.py": "from pkg.data.b import f\n",
        "pkg/data/b.py": "def f():\n    from . import a\n    return a\n",
        "pkg/data/c.py": "import pkg.data.a\n",
    })
    g = import_graph(tmp_path, "pkg")
    assert g["pkg.data.b"] == {"pkg.data.a"} and g["pkg.data.c"] == {"pkg.data.a"}
    cycle = find_cycle(g)
    assert cycle is not None and set(cycle) == {"pkg.data.a", "pkg.data.b"} and cycle[0] == cycle[-1]


def test_checker_finds_a_back_edge_and_accepts_forward_ones(tmp_path):
    _write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/data/__init__.py": "",
        "pkg/data/load.py": "def load():\n    from typing import TYPE_CHECKING\n    if TYPE_CHECKING:\n"
                            "        from ..report.write import w\n",
        "pkg/report/__init__.py": "",
        "pkg/report/write.py": "from pkg.data import load\n\ndef w():\n    return load\n",
    })
    g = import_graph(tmp_path, "pkg")
    stages = {"data": 1, "report": 6, "": 7}
    assert find_cycle(g) is not None  # data.load -> report.write -> data.load
    assert back_edges(g, stages) == ["pkg.data.load (stage 1) -> pkg.report.write (stage 6)"]
    g["pkg.data.load"].clear()  # without the planted edge: report importing data is the data flow
    assert find_cycle(g) is None and back_edges(g, stages) == []


def test_checker_follows_imports_by_name(tmp_path):
    _write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/data/__init__.py": "import importlib\n_LAZY = {'x': 'pkg.report.r'}\n"
                                "def __getattr__(n):\n    return importlib.import_module(_LAZY[n])\n",
        "pkg/report/__init__.py": "",
        "pkg/report/r.py": "NAME = 'pkg.data'  # a string only: no import_module call here\n",
    })
    g = import_graph(tmp_path, "pkg")
    assert g["pkg.data"] == {"pkg.report.r"} and g["pkg.report.r"] == set()
    with pytest.raises(KeyError, match="stage is not declared"):
        back_edges(g, {"data": 1})
