"""Run by the WebUI at every start and right after "Install from URL" (shared/reference/host-api.md §1.2).

It runs in a subprocess with the WebUI root as working directory and on PYTHONPATH, so `import launch` works.
The decisions live in easyphoto/install_plan.py (tested without a WebUI); this file only wires them to the host.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import launch  # noqa: E402 - the WebUI's launcher, importable because the WebUI root is on PYTHONPATH

from easyphoto.install_plan import run  # noqa: E402

sys.exit(run(launch.run_pip, webui_root=os.getcwd(), argv=sys.argv, python=getattr(launch, "python", sys.executable)))
