"""Where a trace's episodes end, in completion tokens: the prefixes the meta-prover answers after each episode.

Boundaries follow the training job's convention: a marker boundary (a paragraph starting with a continuation cue)
is moved before the blank line that precedes it, so ``prefix + forced-termination suffix`` reads exactly as the
prompt format lays it out; grid rules put a boundary every ``grid`` tokens.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from mrt_jax.sampling.episodes import EpisodeRules, char_to_token, episode_boundaries, text_boundaries


def episode_starts(tokens: Sequence[int], rules: EpisodeRules,
                   decode: Callable[[Sequence[int]], str] | None = None) -> list[int]:
    """Completion-token indices where episodes 2, 3, ... start (sorted, each in 1..len(tokens)-1)."""
    if rules.mode == "grid":
        return episode_boundaries(tokens, rules)
    if decode is None:
        raise ValueError("episode rules with markers need a decode function (tokenizer.decode)")
    chars = [max(0, c - len(rules.separator)) for c in text_boundaries(decode(tokens), rules)]
    return sorted({b for b in char_to_token(tokens, chars, decode) if 0 < b < len(tokens)})


def episode_positions(tokens: Sequence[int], rules: EpisodeRules, max_episodes: int,
                      decode: Callable[[Sequence[int]], str] | None = None) -> list[int | None]:
    """Prefix length after e = 0..max_episodes episodes: 0 (the prompt alone), then each episode's end; None from
    the episode at which the trace is already complete (its own final answer counts there)."""
    if max_episodes < 0:
        raise ValueError(f"max_episodes must be >= 0, got {max_episodes}")
    starts = episode_starts(tokens, rules, decode)
    return [0] + [starts[e - 1] if e - 1 < len(starts) else None for e in range(1, max_episodes + 1)]
