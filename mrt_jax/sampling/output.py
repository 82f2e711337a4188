"""What generation returns, and the handle that lets later calls fork from its KV cache."""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import numpy as np


class CacheRef(NamedTuple):
    """A generation's KV cache kept for forking. Row r's cached sequence tokens sit at ``seq_slots[r]``."""

    cache: Any  # per layer (keys, values) [R, K, S, E] (R >= number of output rows: padding rows at the end)
    seq_slots: list  # per output row: int array of slots, in sequence order (prompt tokens, then completion)


@dataclasses.dataclass
class SampleOutput:
    """Per-row results. ``tokens[i]`` is the completion (the stopping EOS token included when one ended it).

    ``logprobs[i][t]`` is ``log softmax(logits)[tokens[i][t]]`` under the model's *unmodified* distribution
    (temperature 1, no top-k/top-p): the value the learner's PPO ratio needs. ``sample_logprobs`` is the same under
    the distribution actually sampled from (0 for greedy). ``prompt_tokens[i]`` is the prefix the completion
    continues (the prompt; for a fork, the kept trace plus the appended text). ``finish_reasons[i]`` is
    "eos", "stop" (a stop string) or "length" (token budget). ``texts`` is None without a tokenizer.
    """

    tokens: list[list[int]]
    logprobs: list[np.ndarray]
    sample_logprobs: list[np.ndarray]
    lengths: np.ndarray
    finish_reasons: list[str]
    prompt_tokens: list[list[int]]
    texts: list[str] | None = None
    cache: CacheRef | None = dataclasses.field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.tokens)

    def select(self, rows: list[int]) -> SampleOutput:
        """These rows, in this order (without a kept cache: its slots are per original row)."""
        pick = lambda xs: [xs[r] for r in rows]  # noqa: E731
        return SampleOutput(pick(self.tokens), pick(self.logprobs), pick(self.sample_logprobs),
                            np.asarray(self.lengths)[rows], pick(self.finish_reasons), pick(self.prompt_tokens),
                            None if self.texts is None else pick(self.texts), None)

    def sequence(self, i: int) -> list[int]:
        """Prompt plus completion of row i."""
        return list(self.prompt_tokens[i]) + list(self.tokens[i])


@dataclasses.dataclass(frozen=True)
class Branch:
    """Fork ``n`` continuations of row ``row`` after its first ``position`` completion tokens, then ``text``.

    ``text`` (a string for the tokenizer, or token ids) is appended before generation, e.g. the forced-termination
    suffix. It is tokenized on its own, so the result equals generation from scratch on the concatenated *tokens*.
    """

    row: int
    position: int
    text: str | list[int] = ""
    n: int = 1
