"""House rules that keep the extension installable and safe, checked on the source (ARCHITECTURE.md §2)."""

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENGINE = sorted((ROOT / "easyphoto").rglob("*.py"))
HOST_MODULES = {"modules", "launch", "scripts", "lib_controlnet", "internal_controlnet", "modules_forge"}


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_only_the_webui_adapter_imports_the_host():
    offenders = [str(p.relative_to(ROOT)) for p in ENGINE
                 if p.name != "webui.py" and imported_roots(p) & HOST_MODULES]
    assert offenders == []


def test_no_eval_exec_or_pickle_in_shipped_code():
    shipped = [*ENGINE, *(ROOT / "scripts").glob("*.py"), ROOT / "install.py", ROOT / "preload.py"]
    for path in shipped:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id not in {"eval", "exec"}, f"{path}: {node.func.id}()"
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "pickle":
                raise AssertionError(f"{path}: pickle.{node.attr}")


def test_torchvision_is_never_imported():
    assert not [p for p in ENGINE if "torchvision" in imported_roots(p)]


def test_importing_the_engine_front_ends_loads_nothing_heavy():
    code = (
        "import json, sys\n"
        "import easyphoto.backends.webui, easyphoto.api, easyphoto.cli, easyphoto.ui, easyphoto.weights, "
        "easyphoto.install_plan\n"
        "print(json.dumps(sorted(m for m in ('torch', 'diffusers', 'gradio', 'transformers', 'onnxruntime', 'cv2')"
        " if m in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert json.loads(out.stdout) == []
