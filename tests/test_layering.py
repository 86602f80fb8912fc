"""House rules that keep the extension installable and safe, checked on the source (ARCHITECTURE.md §2)."""

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENGINE = sorted((ROOT / "easyphoto").rglob("*.py"))
GLUE = sorted((ROOT / "easyphoto_webui").rglob("*.py"))  # the WebUI callbacks: host + front ends
HOST_ADAPTER = ROOT / "easyphoto" / "backends" / "webui"
HOST_MODULES = {"modules", "launch", "scripts", "lib_controlnet", "internal_controlnet", "modules_forge"}
FRONT_ENDS = ("easyphoto.ui", "easyphoto.api", "easyphoto.cli", "easyphoto.cli_common", "easyphoto.cli_tryon",
              "easyphoto.cli_design", "easyphoto.app", "easyphoto.__main__")


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_only_the_webui_adapter_imports_the_host():
    """The host may be imported by easyphoto/backends/webui/, easyphoto_webui/ and scripts/ only."""
    offenders = [str(p.relative_to(ROOT)) for p in ENGINE
                 if not p.is_relative_to(HOST_ADAPTER) and imported_roots(p) & HOST_MODULES]
    assert offenders == []


# ------------------------------------------------------------------------------------------------ the import graph
def module_name(relative: str) -> tuple[str, bool]:
    """('easyphoto.ui', True) for 'easyphoto/ui/__init__.py': the dotted name and whether it is a package."""
    parts = relative[:-3].split("/")
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts), False


def _known(name: str, modules: set[str]) -> str | None:
    """The module `name` names, or the deepest known package above it (`pkg.func` → `pkg`); None outside."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _from_base(node: ast.ImportFrom, name: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    package = name.split(".") if is_package else name.split(".")[:-1]
    package = package[:len(package) - (node.level - 1)]
    return ".".join(package + ([node.module] if node.module else []))


def _type_checking_only(tree: ast.AST) -> set[int]:
    """ids of the nodes under `if TYPE_CHECKING:`: imports for annotations, never executed."""
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in {getattr(node.test, "id", None),
                                                           getattr(node.test, "attr", None)}:
            skipped |= {id(inner) for statement in node.body for inner in ast.walk(statement)}
    return skipped


def module_imports(name: str, is_package: bool, tree: ast.AST, modules: set[str], runtime_only=False) -> set[str]:
    """Every module of `modules` that `name` imports: top-level, inside functions, relative ones resolved, and (unless
    `runtime_only`) those under `if TYPE_CHECKING:`. `from P import m` is an edge to the module P.m when it is one,
    else to P."""
    skipped = _type_checking_only(tree) if runtime_only else set()
    targets = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            targets |= {_known(alias.name, modules) for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = _from_base(node, name, is_package)
            for alias in node.names:
                submodule = f"{base}.{alias.name}" if base else alias.name
                targets.add(submodule if submodule in modules else _known(base, modules))
    return targets - {None, name}


def import_graph(sources: dict[str, str], runtime_only=False) -> dict[str, set[str]]:
    """{module: modules it imports} of the given {relative path: source}."""
    names = {path: module_name(path) for path in sources}
    modules = {name for name, _ in names.values()}
    return {name: module_imports(name, is_package, ast.parse(sources[path]), modules, runtime_only)
            for path, (name, is_package) in names.items()}


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (import cycles), Tarjan's algorithm."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while not component or component[-1] != node:
                component.append(stack.pop())
                on_stack.discard(component[-1])
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def _within(name: str, prefixes) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def is_engine(name: str) -> bool:
    return _within(name, ["easyphoto"]) and not _within(name, FRONT_ENDS)


def layering_problems(sources: dict[str, str]) -> list[str]:
    """Import cycles (with the edges inside them) and edges from the engine up to a front end, among all imports:
    an annotation-only import (under `if TYPE_CHECKING:`) never runs, but it is still a dependency a reader follows,
    so it may neither close a cycle nor point up."""
    graph = import_graph(sources)
    problems = []
    for component in strongly_connected(graph):
        edges = [f"{a} -> {b}" for a in component for b in sorted(graph[a]) if b in component]
        problems.append("import cycle: " + ", ".join(edges))
    problems += [f"engine imports a front end: {a} -> {b}" for a in sorted(graph) if is_engine(a)
                 for b in sorted(graph[a]) if _within(b, FRONT_ENDS)]
    return problems


def test_the_import_graph_has_no_cycle_and_points_down():
    sources = {str(p.relative_to(ROOT)): p.read_text(encoding="utf-8") for p in [*ENGINE, *GLUE]}
    graph = import_graph(sources)
    assert "easyphoto_webui.callbacks" in graph and "easyphoto.backends.webui.generator" in graph
    assert "easyphoto.ui" in graph["easyphoto_webui.callbacks"]  # the glue's function-level imports are seen
    problems = layering_problems(sources)
    assert not problems, "\n".join(problems)


def test_the_layering_check_catches_what_the_old_adapter_did():
    """The shape of the adapter before the split: engine code importing front ends inside functions, one of them
    relatively, and a front end importing the engine back (a cycle)."""
    sources = {
        "easyphoto/__init__.py": "",
        "easyphoto/backends/__init__.py": "",
        "easyphoto/backends/webui.py": ("from easyphoto.context import AppContext\n\n"
                                        "def on_ui_tabs():\n    from easyphoto.ui import build_ui\n\n"
                                        "def on_app_started():\n    from easyphoto import api\n"
                                        "    from ..app import is_loopback\n"),
        "easyphoto/context.py": "import easyphoto.store\n",
        "easyphoto/store.py": "from . import context\n",
        "easyphoto/ui/__init__.py": "from .tabs import build_ui\n",
        "easyphoto/ui/tabs.py": "from ..backends import webui\n",
        "easyphoto/api/__init__.py": "",
        "easyphoto/app.py": "",
        "easyphoto/cli.py": "",
        # annotation-only imports count too: an arrow up to a front end, and (below) part of a cycle
        "easyphoto/upscale.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from easyphoto.context import X\n",
        "easyphoto/weights.py": "import typing\nif typing.TYPE_CHECKING:\n    from easyphoto.cli import main\n",
    }
    graph = import_graph(sources)
    assert graph["easyphoto.backends.webui"] == {"easyphoto.context", "easyphoto.ui", "easyphoto.api",
                                                 "easyphoto.app"}
    assert graph["easyphoto.ui.tabs"] == {"easyphoto.backends.webui"}
    problems = layering_problems(sources)
    assert problems == [
        "import cycle: easyphoto.backends.webui -> easyphoto.ui, easyphoto.ui -> easyphoto.ui.tabs, "
        "easyphoto.ui.tabs -> easyphoto.backends.webui",
        "import cycle: easyphoto.context -> easyphoto.store, easyphoto.store -> easyphoto.context",
        "engine imports a front end: easyphoto.backends.webui -> easyphoto.api",
        "engine imports a front end: easyphoto.backends.webui -> easyphoto.app",
        "engine imports a front end: easyphoto.backends.webui -> easyphoto.ui",
        "engine imports a front end: easyphoto.weights -> easyphoto.cli",
    ]
    del sources["easyphoto/store.py"], sources["easyphoto/ui/tabs.py"], sources["easyphoto/weights.py"]
    sources["easyphoto/backends/webui.py"] = "from easyphoto.context import AppContext\n"
    assert layering_problems(sources) == []
    sources["easyphoto/context.py"] += "from easyphoto import upscale\n"
    assert import_graph(sources)["easyphoto.upscale"] == {"easyphoto.context"}
    assert import_graph(sources, runtime_only=True)["easyphoto.upscale"] == set()
    assert layering_problems(sources) == [  # closed by an annotation-only import: still a cycle
        "import cycle: easyphoto.context -> easyphoto.upscale, easyphoto.upscale -> easyphoto.context"]


# ------------------------------------------------------------------------------------------------ shipped code
def test_no_eval_exec_or_pickle_in_shipped_code():
    shipped = [*ENGINE, *GLUE, *(ROOT / "scripts").glob("*.py"), ROOT / "install.py", ROOT / "preload.py"]
    for path in shipped:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id not in {"eval", "exec"}, f"{path}: {node.func.id}()"
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "pickle":
                raise AssertionError(f"{path}: pickle.{node.attr}")


def test_torchvision_is_never_imported():
    assert not [p for p in [*ENGINE, *GLUE] if "torchvision" in imported_roots(p)]


def test_importing_the_engine_front_ends_loads_nothing_heavy():
    code = (
        "import json, sys\n"
        "import easyphoto.backends.webui, easyphoto.backends.webui.upscaler, easyphoto_webui.callbacks, "
        "easyphoto.api, easyphoto.cli, easyphoto.ui, easyphoto.weights, easyphoto.install_plan\n"
        "print(json.dumps(sorted(m for m in ('torch', 'diffusers', 'gradio', 'transformers', 'onnxruntime', 'cv2')"
        " if m in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert json.loads(out.stdout) == []
