"""``python -m tests.kit [ROOT]``: build every kit model artefact and print how long each step took.

Why: to measure the cold-build cost on a given machine (the kit promises < 60 s on 2 cores) and
to warm a cache before running tests. ROOT defaults to the pytest cache folder the fixtures use.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from .artefacts import build_all
from .cache import prepare_root

DEFAULT_ROOT = Path(".pytest_cache") / "d" / "easyphoto-kit-v1"


def main(argv: list[str]) -> int:
    """Build into ``argv[0]`` (or the default root) and print per-step and total seconds."""
    root = prepare_root(Path(argv[0]) if argv else DEFAULT_ROOT)
    start = time.perf_counter()
    for step, seconds in build_all(root).items():
        print(f"{step:16s} {seconds:7.2f} s")
    print(f"{'total':16s} {time.perf_counter() - start:7.2f} s  ({root})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
