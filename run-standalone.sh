#!/usr/bin/env bash
# Install and run the standalone EasyPhoto app (README: "Standalone quick start").
#   bash run-standalone.sh [serve options...]     e.g. --port 7861 --data-dir ~/easyphoto
# Uses .venv/ (created on first run). torch is installed first on its own so an existing CUDA build is kept;
# set TORCH_SPEC (default torch==2.13.0) to choose another build.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
  .venv/bin/pip install -q --upgrade pip
fi
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  .venv/bin/pip install "${TORCH_SPEC:-torch==2.13.0}"
fi
TORCH_VERSION=$(.venv/bin/python -c "import torch; print(torch.__version__.split('+')[0])")
echo "torch==$TORCH_VERSION" > .venv/torch-constraint.txt
.venv/bin/pip install -q -c .venv/torch-constraint.txt -e ".[ui,diffusion,face]"
exec .venv/bin/python -m easyphoto serve "$@"
