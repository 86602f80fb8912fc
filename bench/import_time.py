"""Time to load scripts/easyphoto.py through the WebUI host double (goal: ≤ 0.3 s).

Each sample runs in a fresh interpreter, so nothing is cached between samples; the host double's own start-up
(its modules, the ControlNet and Lora doubles) is timed without our extension and subtracted, so the number is ours alone.

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
sys.path.insert(0, {root!r})
from tests.host.harness import WebUIHost
tmp = Path(tempfile.mkdtemp())
host = WebUIHost(tmp, flavour={flavour!r}, extensions={extensions})
t0 = time.perf_counter()
host.start()  # preload + load_scripts(), as at WebUI start
elapsed = time.perf_counter() - t0
print(json.dumps({{"seconds": elapsed, "heavy": sorted(m for m in ("torch", "diffusers", "gradio") if m in sys.modules)}}))
"""


def sample(flavour: str, with_extension: bool) -> dict:
    extensions = repr({"easyphoto": str(ROOT)}) if with_extension else "{}"
    code = PROBE.format(root=str(ROOT), flavour=flavour, extensions=extensions)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    for flavour in ("a1111", "forge"):
        ours = [sample(flavour, True) for _ in range(args.runs)]
        base = [sample(flavour, False) for _ in range(args.runs)]
        with_ext = statistics.median(s["seconds"] for s in ours)
        without = statistics.median(s["seconds"] for s in base)
        heavy = sorted({m for s in ours for m in s["heavy"]} - {m for s in base for m in s["heavy"]})
        print(
            f"{flavour}: load_scripts with EasyPhoto {with_ext * 1000:.1f} ms, without {without * 1000:.1f} ms, "
            f"EasyPhoto's share {(with_ext - without) * 1000:.1f} ms (goal ≤ 300 ms); "
            f"heavy modules it imported: {heavy or 'none'}  [median of {args.runs}]"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
