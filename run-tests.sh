#!/usr/bin/env bash
# Install and run the whole test suite, the way CI does (README: "Run the tests").
#
#   bash run-tests.sh              both WebUI pin sets (A1111 1.10.x and Forge), lint, Python 3.10 check
#   bash run-tests.sh a1111        one pin set only (also: forge, py310, lint)
#   PYTEST_ARGS="-k store" bash run-tests.sh a1111
#
# Each pin set gets its own virtual environment under $EASYPHOTO_VENVS (default .venvs/): torch 2.13.0 (CPU) is
# installed first and every later pip call is constrained to it, so nothing pulls a CUDA build. A venv is reused
# only while its requirement files are unchanged (a clean clone, as in CI, always builds fresh ones).
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)
VENVS=${EASYPHOTO_VENVS:-$ROOT/.venvs}
PYTHON=${PYTHON:-python3.11}
PY310=${PY310:-}
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(lint a1111 forge py310)
export PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
summary=()

log() { printf '\n=== %s\n' "$*"; }

# Run pip without the warnings some machines print for configured local index folders that do not exist.
quiet() {
  set +e
  "$@" 2>&1 | grep -v "^WARNING: Location 'file:"
  local status=${PIPESTATUS[0]}
  set -e
  return "$status"
}

# venv NAME PYTHON REQUIREMENT-FILE... : create or reuse .venvs/NAME with those requirements installed.
venv() {
  local name=$1 python=$2; shift 2
  local dir=$VENVS/$name stamp
  local files=("$@")  # no-deps.txt joins the stamp of test venvs: a change to it rebuilds them too
  if [ -f requirements/no-deps.txt ] && grep -q 'test.txt' <<<"$*"; then files+=(requirements/no-deps.txt); fi
  stamp=$(cat "${files[@]}" | sha256sum | cut -c1-16)
  if [ -f "$dir/.stamp" ] && [ "$(cat "$dir/.stamp")" = "$stamp" ]; then return 0; fi
  log "creating $dir"
  rm -rf "$dir"
  "$python" -m venv "$dir"
  if grep -qx 'torch==2.13.0' "$@" 2>/dev/null; then quiet "$dir/bin/pip" install -q torch==2.13.0; fi
  quiet "$dir/bin/pip" install -q -c requirements/constraints.txt $(printf -- '-r %s ' "$@")
  if [ -f requirements/no-deps.txt ] && grep -q 'test.txt' <<<"$*"; then
    quiet "$dir/bin/pip" install -q --no-deps -r requirements/no-deps.txt
  fi
  echo "$stamp" > "$dir/.stamp"
}

# Debian's chromium + chromedriver (and npm) for tests/test_browser*.py, installed when missing and apt is usable (CI
# runs as root); without them those tests fail under CI=true and are skipped elsewhere, saying why.
ensure_browser() {
  if command -v chromium >/dev/null && command -v chromedriver >/dev/null && command -v npm >/dev/null; then return 0; fi
  command -v apt-get >/dev/null || return 0
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo -n"
  local packages=(chromium chromium-driver)
  command -v npm >/dev/null || packages+=(npm)  # tests/test_browser_sam.py packs onnxruntime-web with it
  log "installing ${packages[*]} (browser tests)"
  $sudo apt-get install -y -q "${packages[@]}" >/dev/null 2>&1 \
    || { $sudo apt-get update -q >/dev/null 2>&1 && $sudo apt-get install -y -q "${packages[@]}" >/dev/null; } \
    || echo "could not install ${packages[*]}; tests/test_browser*.py will say so" >&2
}

# Debian's redis-server for tests/test_distributed.py (the distributed job queue), installed when missing and apt is
# usable; without it that test fails under CI=true and is skipped elsewhere, saying why.
ensure_redis() {
  command -v redis-server >/dev/null && return 0
  command -v apt-get >/dev/null || return 0
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo -n"
  log "installing redis-server (distributed job queue tests)"
  $sudo apt-get install -y -q redis-server >/dev/null 2>&1 \
    || { $sudo apt-get update -q >/dev/null 2>&1 && $sudo apt-get install -y -q redis-server >/dev/null; } \
    || echo "could not install redis-server; tests/test_distributed.py will say so" >&2
}

# The README's main command on the Forge venv (the standalone pin set): it installs what is missing and `--smoke`
# then answers one real queued UI event through gradio's client, so a hung queue or a broken install fails here.
standalone_smoke() {
  local data
  data=$(mktemp -d)
  log "run-standalone.sh --smoke (the standalone app from the forge venv)"
  EASYPHOTO_VENV="$VENVS/forge" quiet bash run-standalone.sh --port 0 --smoke --data-dir "$data"
  rm -rf "$data"
}

run_pinset() {
  local pinset=$1 start=$SECONDS
  venv "$pinset" "$PYTHON" requirements/constraints.txt "requirements/$pinset.txt" requirements/test.txt requirements/face.txt
  ensure_redis
  if [ "$pinset" = forge ]; then
    ensure_browser
    standalone_smoke
  fi
  log "pytest, $pinset pin set"
  EASYPHOTO_PINSET=$pinset "$VENVS/$pinset/bin/python" -m pytest tests ${PYTEST_ARGS:-} -p no:cacheprovider \
    -o cache_dir="$VENVS/.pytest-cache" --durations=10
  summary+=("$pinset: ok in $((SECONDS - start)) s")
}

run_lint() {
  venv lint "$PYTHON" requirements/lint.txt
  log "ruff"
  "$VENVS/lint/bin/ruff" check .
  summary+=("lint: ok")
}

# An interpreter for Python 3.10: $PY310, python3.10 on PATH, or one installed by pyenv.
find_py310() {
  local candidate
  for candidate in "$PY310" python3.10 "$(pyenv root 2>/dev/null)"/versions/3.10*/bin/python3.10; do
    if [ -n "$candidate" ] && "$candidate" -c 'import sys; assert sys.version_info[:2] == (3, 10)' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  echo "no Python 3.10 interpreter found: set PY310=/path/to/python3.10" >&2
  return 1
}

# A1111 runs Python 3.10, for which there is no torch wheel here: compile everything and run the torch-free tests.
run_py310() {
  local start=$SECONDS py310
  py310=$(find_py310)
  venv py310 "$py310" requirements/py310.txt
  log "Python 3.10: compile and torch-free tests"
  "$VENVS/py310/bin/python" -m compileall -q easyphoto easyphoto_webui scripts install.py preload.py bench tests
  "$VENVS/py310/bin/python" -m pytest -p no:cacheprovider \
    tests/test_config.py tests/test_store.py tests/test_weights.py tests/test_install_plan.py tests/test_api.py \
    tests/test_cli.py tests/test_layering.py tests/test_code_shape.py
  summary+=("py310: ok in $((SECONDS - start)) s")
}

for target in "${targets[@]}"; do
  case $target in
    a1111|forge) run_pinset "$target" ;;
    lint) run_lint ;;
    py310) run_py310 ;;
    *) echo "unknown target $target (a1111, forge, py310, lint)" >&2; exit 2 ;;
  esac
done
log "summary"; printf '%s\n' "${summary[@]}"
