"""House rules on the shape of shipped code, checked on the source (STYLE.md): no function over 60 lines, and
inference never imports the training package."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 60
SHIPPED_DIRS = ("easyphoto", "easyphoto_webui", "scripts", "bench")
SHIPPED_FILES = ("install.py", "preload.py")

# Functions allowed to be longer, each with the reason. Keys: "<path relative to the root>::<qualified name>".
ALLOWED = {
    "easyphoto/cli.py::build_parser": "argparse declarations: one add_argument per option, no logic to split",
}

# Capability layers (ARCHITECTURE.md): they run inside the WebUI and the standalone app alike and share only
# easyphoto.sd with training; importing easyphoto.train would load the trainer's dependencies into inference.
CAPABILITY_LAYERS = ("easyphoto/generation.py", "easyphoto/imageops.py", "easyphoto/backends", "easyphoto/portrait",
                     "easyphoto/face", "easyphoto/pose", "easyphoto/sd")


def shipped_files() -> list[Path]:
    files = [p for d in SHIPPED_DIRS if (ROOT / d).is_dir() for p in sorted((ROOT / d).rglob("*.py"))]
    return files + [ROOT / f for f in SHIPPED_FILES if (ROOT / f).is_file()]


def function_lengths(path: Path) -> dict[str, int]:
    """Qualified name ("Class.method", "outer.inner") → lines from the ``def`` line to the last line of the body."""
    lengths: dict[str, int] = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    lengths[name] = child.end_lineno - child.lineno + 1
                visit(child, name + ".")
            else:
                visit(child, prefix)

    visit(ast.parse(path.read_text(encoding="utf-8")), "")
    return lengths


def test_function_lengths_are_measured_from_def_to_last_line(tmp_path):
    source = tmp_path / "sample.py"
    source.write_text("class A:\n    def m(self):\n        def inner():\n            return 1\n\n        return inner\n"
                      "\n\n@decorated\nasync def f():\n    pass\n", encoding="utf-8")
    assert function_lengths(source) == {"A.m": 5, "A.m.inner": 2, "f": 2}


def test_no_function_in_shipped_code_is_over_60_lines():
    files = shipped_files()
    assert ROOT / "easyphoto" / "cli.py" in files and ROOT / "bench" / "portrait.py" in files
    too_long = {}
    for path in files:
        rel = path.relative_to(ROOT).as_posix()
        for name, lines in function_lengths(path).items():
            if lines > MAX_LINES and f"{rel}::{name}" not in ALLOWED:
                too_long[f"{rel}::{name}"] = lines
    assert too_long == {}, f"split these into named steps (at most {MAX_LINES} lines each): {too_long}"


def test_every_allowed_long_function_still_exists_and_is_long():
    """An allow-list entry whose function was split or renamed must go, so the list cannot grow stale."""
    for key in ALLOWED:
        rel, name = key.split("::")
        assert function_lengths(ROOT / rel).get(name, 0) > MAX_LINES, f"{key} is no longer an exception"


def imported_modules(path: Path) -> set[str]:
    """Every absolute module an ``import`` or ``from ... import`` names, at any depth (lazy imports included)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def test_inference_never_imports_the_training_package():
    layers = [ROOT / p for p in CAPABILITY_LAYERS]
    files = [f for layer in layers for f in ([layer] if layer.is_file() else sorted(layer.rglob("*.py")))]
    assert ROOT / "easyphoto" / "backends" / "diffusers.py" in files
    offenders = {f.relative_to(ROOT).as_posix(): sorted(m for m in imported_modules(f)
                                                        if m == "easyphoto.train" or m.startswith("easyphoto.train."))
                 for f in files}
    assert {f: m for f, m in offenders.items() if m} == {}
