"""No command-line flag is accepted and then ignored: for every CLI of the repo, each flag its parser defines is
read by the CLI's own module (``args.<flag>``, ``a.<flag>`` or ``getattr(args, "<flag>")``). The training job's
flags and the study's have stronger tests (tests/test_flags_reach_the_code.py): there a flag must also change what
the step computes (or the study's plan), or be refused where it does nothing."""

import argparse
import importlib
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
# The job's parser (experiments.config) and the study's are walked with stronger checks in
# tests/test_flags_reach_the_code.py.
ELSEWHERE = {"experiments.config", "experiments.study"}
CLIS = ["experiments.evaluate", "experiments.compare", "experiments.analyze_traces", "experiments.disaggregated",
        "mrt_jax.distributed.check",
        "launch.tpu_vm", "mrt_jax.distributed.aot", "benchmarks.eval_cost", "benchmarks.sampler_cpu",
        "benchmarks.sampler_fork", "benchmarks.sampler_gpu", "benchmarks.rl_step_cpu", "benchmarks.train_step_cpu",
        "benchmarks.train_step_gpu"]


class _Captured(Exception):
    pass


def _parsers(module: str, argv: list[str]) -> list[argparse.ArgumentParser]:
    """The parser(s) ``module.main(argv)`` builds, captured when it starts parsing (nothing else runs)."""
    seen = []
    real = argparse.ArgumentParser.parse_known_args  # parse_args goes through it too

    def capture(self, args=None, namespace=None):
        seen.append(self)
        raise _Captured

    argparse.ArgumentParser.parse_known_args = capture
    try:
        importlib.import_module(module).main(argv)
    except _Captured:
        pass
    finally:
        argparse.ArgumentParser.parse_known_args = real
    return seen


def test_every_module_that_builds_a_parser_is_walked():
    found = {".".join(p.relative_to(ROOT).with_suffix("").parts)
             for d in ("experiments", "mrt_jax", "launch", "benchmarks") for p in (ROOT / d).rglob("*.py")
             if re.search(r"\b(ArgumentParser|OneLineErrorParser)\(", p.read_text())}
    assert found - ELSEWHERE == set(CLIS)


@pytest.mark.parametrize("module", CLIS)
def test_every_flag_is_read(module):
    argvs = [["run"], ["logs"], ["status"], ["ssh"]] if module == "launch.tpu_vm" else [[]]
    parsers = [p for argv in argvs for p in _parsers(module, argv)]
    assert parsers, f"{module}.main built no parser"
    code = pathlib.Path(importlib.import_module(module).__file__).read_text()
    unread = sorted({a.dest for p in parsers for a in p._actions if a.dest not in ("help", argparse.SUPPRESS)
                     and not re.search(rf"\b(args|a|known)\.{a.dest}\b|getattr\(\w+, [\"']{a.dest}[\"']", code)})
    assert not unread, f"{module}: flags accepted but never read: {unread}"


def test_the_check_finds_an_unread_flag(monkeypatch):
    """The walk above can fail: a flag added to a parser and read nowhere is reported."""
    real_init = argparse.ArgumentParser.__init__

    def init(self, *a, **kw):
        real_init(self, *a, **kw)
        self.add_argument("--zz_never_read_anywhere", default=1)

    monkeypatch.setattr(argparse.ArgumentParser, "__init__", init)
    with pytest.raises(AssertionError, match="zz_never_read_anywhere"):
        test_every_flag_is_read("experiments.compare")
