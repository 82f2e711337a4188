"""Forced termination (the meta-prover mu of MRT.md): the text appended after a prefix to make the model answer.

The suffix depends on the model family and chat template, so it is looked up by name and can be overridden.
"""

from __future__ import annotations

# The reference MRT suffix for R1-style `<think>` models (DeepSeek-R1-Distill-Qwen, DeepScaleR).
R1_TERMINATION = (
    "Time is up.\n\nGiven the time I've spent and the approaches I've tried, I should stop thinking and formulate "
    "a final answer based on what I already have.\n</think>\n\n**Step-by-Step Explanation and Answer:**\n\n1. **"
)
# Models without a thinking delimiter (Llama-3.x backtracking, SmolLM2 chat): close the reasoning in plain text.
PLAIN_TERMINATION = (
    "\n\nTime is up. Given the time I've spent and the approaches I've tried, I should stop and give a final answer "
    "based on what I already have.\n\nFinal answer: "
)

TERMINATION_SUFFIXES: dict[str, str] = {
    "r1": R1_TERMINATION,
    "qwen2": R1_TERMINATION,
    "deepseek-r1": R1_TERMINATION,
    "llama": PLAIN_TERMINATION,
    "smollm2": PLAIN_TERMINATION,
    "plain": PLAIN_TERMINATION,
}

BUDGET_FORCING_TEXTS = ("Wait", "But wait", "Alternatively", "But hold on")


def termination_suffix(family: str, overrides: dict[str, str] | None = None) -> str:
    """The forced-termination text for a model family (``overrides`` wins over the built-in table)."""
    table = {**TERMINATION_SUFFIXES, **(overrides or {})}
    if family not in table:
        raise ValueError(f"no forced-termination suffix for model family {family!r}; known: {sorted(table)} "
                         "(pass overrides={family: text})")
    return table[family]
