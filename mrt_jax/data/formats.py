"""Prompt formats: per format the prompt builder, the completion layout of a worked trace, the forced-termination
suffix (meta-prover mu: appended after a trace prefix to make the model answer now) and the continuation cues
(budget forcing: ``prefix + "\\n\\n" + cue`` and continue).

Trace prefixes are cut at episode boundaries *before* the blank line, so suffixes and continuations start with
``"\\n\\n"``. Formats are frozen dataclasses: change a suffix with ``dataclasses.replace(fmt, ...)``.

- ``plain``: for small from-scratch models. ``Question: q\\nSolution:\\n`` then the episodes, then
  ``\\n\\nAnswer: \\boxed{a}``; forced termination ``\\n\\nAnswer:``, answered on that line.
- ``r1``: R1-style thinking template (prompt ends with ``<think>\\n``); completion ``episodes\\n</think>\\n\\nThe final
  answer is \\boxed{a}.``; forced termination is the MRT reference suffix, answered by a worked explanation that
  ends in a box.
- ``chat_format(tokenizer)``: the checkpoint's own chat template (``tokenizer.apply_chat_template``), with or
  without a thinking block; ``chat_box`` is the same template whose instruction only says where the answer goes
  (no "reason step by step").

Each format also says how the meta-prover's forced answer ends (``answer_stop``: stop strings or a
``mrt_jax.sampling.stops`` rule) and how many tokens it may take (``answer_tokens``, the recommended budget: the
training job's ``--meta_max_tokens=0``). A stop that cannot occur before the answer (``"\\n"`` after the R1 suffix,
which opens a multi-line explanation) would make every forced answer wrong.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from mrt_jax.sampling.stops import BOX_CLOSED, StopRule

R1_CUES = ("Wait", "But wait", "Alternatively", "But hold on")
MRT_REFERENCE_SUFFIX = (
    "Time is up.\n\nGiven the time I've spent and the approaches I've tried, I should stop thinking and formulate a "
    "final answer based on what I already have.\n</think>\n\n**Step-by-Step Explanation and Answer:**\n\n1. **")
INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
# Only the answer's form: SmolLM2-135M-Instruct told to reason step by step rambles and rarely boxes (easy-math,
# 128-256 tokens: 3.7% of its own traces score), told only where the answer goes it scores 11.3% (docs/study/smollm2).
BOX_INSTRUCTION = "Put your final answer within \\boxed{}."


@dataclasses.dataclass(frozen=True)
class PromptFormat:
    """A text template format. ``{question}``, ``{thinking}`` and ``{answer}`` are substituted literally (no
    ``str.format``: questions contain braces)."""

    name: str
    prompt_template: str
    completion_template: str
    forced_termination_suffix: str
    continuation_cues: tuple[str, ...]
    episode_separator: str = "\n\n"
    answer_stop: tuple[str | StopRule, ...] = ("\n",)  # where a forced answer ends (EOS always ends it)
    answer_tokens: int = 16  # the forced answer's recommended token budget

    def build_prompt(self, question: str) -> str:
        return self.prompt_template.replace("{question}", question)

    def build_completion(self, episodes: Sequence[str], answer: str) -> str:
        """The full response of a worked trace: episodes joined by the separator, then the final answer."""
        thinking = self.episode_separator.join(episodes)
        return self.completion_template.replace("{thinking}", thinking).replace("{answer}", answer)

    def forced_termination(self, prefix: str) -> str:
        """``prefix`` (a trace cut at an episode boundary) followed by the forced-termination suffix."""
        return prefix + self.forced_termination_suffix

    def continuation(self, prefix: str, cue: str | None = None) -> str:
        """``prefix`` followed by a new episode that starts with ``cue`` (default: the first cue)."""
        cue = self.continuation_cues[0] if cue is None else cue
        if cue not in self.continuation_cues:
            raise ValueError(f"format {self.name!r}: cue {cue!r} not in {list(self.continuation_cues)}")
        return prefix + self.episode_separator + cue


PLAIN = PromptFormat(
    name="plain",
    prompt_template="Question: {question}\nSolution:\n",
    completion_template="{thinking}\n\nAnswer: \\boxed{{answer}}",
    forced_termination_suffix="\n\nAnswer:",
    continuation_cues=("Wait",),
)

R1 = PromptFormat(
    name="r1",
    prompt_template=("A conversation between User and Assistant. The Assistant first thinks step by step inside "
                     "<think> </think>, then gives the final answer.\nUser: {question} " + INSTRUCTION
                     + "\nAssistant: <think>\n"),
    completion_template="{thinking}\n</think>\n\nThe final answer is \\boxed{{answer}}.",
    forced_termination_suffix="\n\n" + MRT_REFERENCE_SUFFIX,
    continuation_cues=R1_CUES,
    answer_stop=(BOX_CLOSED,),  # the suffix opens "1. **": a worked explanation over lines, then the box
    answer_tokens=256,
)


@dataclasses.dataclass(frozen=True)
class ChatFormat(PromptFormat):
    """The checkpoint's chat template. ``think=True`` when the template opens ``<think>`` in the generation prompt
    (R1-Distill) so the completion closes it; ``think=False`` for plain instruct models (SmolLM2)."""

    tokenizer: Any = None
    system: str | None = None

    def build_prompt(self, question: str) -> str:
        messages = [] if self.system is None else [{"role": "system", "content": self.system}]
        messages.append({"role": "user", "content": self.prompt_template.replace("{question}", question)})
        text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True)
        if not isinstance(text, str):
            raise TypeError(f"format {self.name!r}: apply_chat_template returned {type(text).__name__}, expected str")
        return text


def chat_format(tokenizer: Any, *, think: bool = False, system: str | None = None,
                instruction: str = INSTRUCTION, name: str | None = None) -> ChatFormat:
    """A ``ChatFormat`` over ``tokenizer.apply_chat_template(messages, add_generation_prompt=True)``; the user
    message is the question followed by ``instruction``."""
    if not hasattr(tokenizer, "apply_chat_template"):
        raise TypeError(f"chat_format: {type(tokenizer).__name__} has no apply_chat_template")
    if think:
        return ChatFormat(name or "chat_think", "{question} " + instruction, R1.completion_template,
                          R1.forced_termination_suffix, R1_CUES, answer_stop=R1.answer_stop,
                          answer_tokens=R1.answer_tokens, tokenizer=tokenizer, system=system)
    return ChatFormat(
        name or "chat", "{question} " + instruction, "{thinking}\n\nThe final answer is \\boxed{{answer}}.",
        "\n\nTime is up. Given the time I've spent and the approaches I've tried, I should stop and give my final "
        "answer now.\n\nThe final answer is", R1_CUES, answer_stop=("\n", BOX_CLOSED), answer_tokens=32,
        tokenizer=tokenizer, system=system)


FORMATS: dict[str, PromptFormat] = {"plain": PLAIN, "r1": R1}
CHAT_FORMATS = ("chat", "chat_think", "chat_box")  # built over a tokenizer's chat template


def get_format(name: str, tokenizer: Any = None) -> PromptFormat:
    """``plain`` / ``r1``, or ``chat`` / ``chat_think`` / ``chat_box`` (need ``tokenizer``)."""
    if name in FORMATS:
        return FORMATS[name]
    if name in CHAT_FORMATS:
        if tokenizer is None:
            raise ValueError(f"format {name!r} needs a tokenizer with a chat template")
        if name == "chat_box":
            return chat_format(tokenizer, instruction=BOX_INSTRUCTION, name=name)
        return chat_format(tokenizer, think=name == "chat_think")
    raise ValueError(f"unknown prompt format {name!r}; allowed: plain, r1, {', '.join(CHAT_FORMATS)}")
