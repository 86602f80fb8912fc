#!/usr/bin/env bash
# Install and run the standalone EasyPhoto app (README: "Standalone quick start").
#   bash run-standalone.sh [serve options...]     e.g. --port 7861 --data-dir ~/easyphoto
# Uses .venv/ (created on first run; EASYPHOTO_VENV=DIR picks another one). torch is installed first on its own so
# an existing CUDA build is kept (TORCH_SPEC, default torch==2.13.0, chooses another build); everything else comes
# from requirements/standalone.txt, the pin set CI tests the app with, constrained to that torch. The install step
# is skipped while the requirement files and the torch build are unchanged.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
VENV=${EASYPHOTO_VENV:-.venv}
export PIP_DISABLE_PIP_VERSION_CHECK=1
if [ ! -x "$VENV/bin/python" ]; then
  echo "EasyPhoto: creating $VENV (first run: installing takes a few minutes)"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
fi
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  "$VENV/bin/pip" install "${TORCH_SPEC:-torch==2.13.0}"
fi
TORCH_VERSION=$("$VENV/bin/python" -c "import torch; print(torch.__version__.split('+')[0])")
echo "torch==$TORCH_VERSION" > "$VENV/torch-constraint.txt"
stamp=$(cat requirements/standalone.txt requirements/forge.txt requirements/face.txt pyproject.toml \
  "$VENV/torch-constraint.txt" | sha256sum | cut -c1-16)
if [ "$(cat "$VENV/.easyphoto-standalone" 2>/dev/null)" != "$stamp" ]; then
  echo "EasyPhoto: installing the standalone pin set into $VENV"
  "$VENV/bin/pip" install -q -c "$VENV/torch-constraint.txt" -r requirements/standalone.txt -e ".[ui,diffusion,face]"
  echo "$stamp" > "$VENV/.easyphoto-standalone"
fi
exec "$VENV/bin/python" -m easyphoto serve "$@"
