"""Episode segmentation (markers with gap/cap/grouping, backtracks, token grid) and the termination suffix table."""

import pytest

from mrt_jax.sampling.episodes import EpisodeRules, char_to_token, episode_boundaries, text_boundaries
from mrt_jax.sampling.termination import R1_TERMINATION, termination_suffix
from mrt_jax.sampling.toy import ToyTokenizer

TRACE = ("let me think\n\nfirst step\n\nWait no\n\nsecond\n\nWait again\n\nAlternatively x\n\n"
         "But hold on y\n\nok")


def starts(text, rules):
    return [text[i:].split("\n")[0] for i in text_boundaries(text, rules)]


def test_marker_rules_gap_cap_group():
    assert starts(TRACE, EpisodeRules.r1(min_gap=0)) == ["Wait no", "Wait again", "Alternatively x", "But hold on y"]
    # paragraphs 2, 4, 5, 6 start with markers; with min_gap 2 paragraph 5 is too close to 4
    assert starts(TRACE, EpisodeRules.r1()) == ["Wait no", "Wait again", "But hold on y"]
    assert starts(TRACE, EpisodeRules.r1(min_gap=0, max_boundaries=2)) == ["Wait no", "Wait again"]
    assert starts(TRACE, EpisodeRules.r1(min_gap=0, group=2)) == ["Wait again", "But hold on y"]
    assert text_boundaries("Wait at the very start\n\nno marker", EpisodeRules.r1()) == []


def test_backtrack_rules():
    text = "line a\nBacktrack to Line 1\nline b\nline c\nBacktrack to beginning\nend"
    assert starts(text, EpisodeRules.backtrack()) == ["Backtrack to Line 1", "Backtrack to beginning"]


def test_token_boundaries_end_before_marker():
    tok = ToyTokenizer(512)
    ids = tok.encode(TRACE)
    bounds = episode_boundaries(ids, EpisodeRules.r1(min_gap=0), tok.decode)
    assert len(bounds) == 4 and bounds == sorted(bounds)
    for b in bounds:
        prefix, rest = tok.decode(ids[:b]), tok.decode(ids[b:])
        assert prefix + rest == TRACE
        assert rest.lstrip().startswith(("Wait", "Alternatively", "But hold on")) or rest[:1] != "\n"
        assert len(prefix) <= TRACE.index(rest.lstrip()[:8])


def test_char_to_token_is_largest_prefix_within():
    tok = ToyTokenizer(512)
    ids = tok.encode("abc defgh ij")
    for c in range(13):
        n = char_to_token(ids, [c], tok.decode)[0]
        assert len(tok.decode(ids[:n])) <= c and (n == len(ids) or len(tok.decode(ids[:n + 1])) > c)


def test_grid_rule():
    assert episode_boundaries(list(range(10)), EpisodeRules.grid_of(3)) == [3, 6, 9]
    assert episode_boundaries(list(range(10)), EpisodeRules.grid_of(3, group=2)) == [6]
    assert episode_boundaries(list(range(3)), EpisodeRules.grid_of(3)) == []


def test_bad_rules_and_suffix_table():
    with pytest.raises(ValueError, match="mode"):
        EpisodeRules(mode="paragraphs")
    with pytest.raises(ValueError, match="grid"):
        EpisodeRules.grid_of(0)
    with pytest.raises(ValueError, match="decode"):
        episode_boundaries([1, 2], EpisodeRules.r1())
    assert termination_suffix("qwen2") == R1_TERMINATION and R1_TERMINATION.startswith("Time is up.")
    assert termination_suffix("mine", {"mine": "Answer: "}) == "Answer: "
    with pytest.raises(ValueError, match="no forced-termination suffix"):
        termination_suffix("gpt2")
