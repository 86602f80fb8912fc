"""Time to load scripts/easyphoto.py through the WebUI host double (goal: ≤ 0.3 s).

Each sample runs in a fresh interpreter, so nothing of ours is cached: the host double starts first (its modules, the
ControlNet and Lora doubles), then the double's own `script_loading.load_module` executes scripts/easyphoto.py with
the extension folder first on sys.path, exactly as the WebUI's loader does, and only that call is timed. The host
double's start-up is printed beside it as the baseline a user waits for anyway.

    python bench/import_time.py [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PROBE = r"""
import json, sys, tempfile, time
from pathlib import Path
root = Path({root!r})
sys.path.insert(0, str(root))
from tests.host.harness import WebUIHost
host = WebUIHost(Path(tempfile.mkdtemp()), flavour={flavour!r})
t0 = time.perf_counter()
host.start()
host_s = time.perf_counter() - t0
sys.path.remove(str(root))
from modules import script_loading
sys.path.insert(0, str(root))  # the loader puts the extension folder first while the script runs
t0 = time.perf_counter()
script_loading.load_module(str(root / "scripts" / "easyphoto.py"))
ours = time.perf_counter() - t0
heavy = sorted(m for m in ("torch", "diffusers", "gradio", "transformers", "onnxruntime") if m in sys.modules)
print(json.dumps({{"ours": ours, "host": host_s, "heavy": heavy}}))
"""


def sample(flavour: str) -> dict:
    code = PROBE.format(root=str(ROOT), flavour=flavour)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    for flavour in ("a1111", "forge"):
        samples = [sample(flavour) for _ in range(args.runs)]
        ours = statistics.median(s["ours"] for s in samples)
        host = statistics.median(s["host"] for s in samples)
        heavy = sorted({m for s in samples for m in s["heavy"]})
        print(
            f"{flavour}: loading scripts/easyphoto.py took {ours * 1000:.1f} ms (goal ≤ 300 ms, ratio "
            f"{ours / 0.3:.3f}); the host double's own start-up {host * 1000:.0f} ms; heavy modules loaded: "
            f"{heavy or 'none'}  [median of {args.runs}]"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
