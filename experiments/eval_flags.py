"""Flags of ``experiments.evaluate`` that do nothing under the other flags, and why. Such a flag, given with a
value other than its default, is refused: an evaluation that silently ignored ``--episode_grid`` or
``--dataset_format`` would report settings it never ran."""

from __future__ import annotations

import argparse

from experiments.eval_inputs import looks_like_file
from experiments.setup_model import ARCH_PREFIX, FROM_SCRATCH


def _sampled(temperature: float | None, count: int) -> bool:
    """Whether draws at this temperature (None: evaluate's default, greedy for a single draw) are random."""
    return (temperature if temperature is not None else (0.0 if count == 1 else 0.6)) > 0


def inert_eval_flags(args: argparse.Namespace, defaults: dict, dataset: str, *,
                     run_data: bool = False) -> list[tuple[str, str]]:
    """(flag, why) for each flag given away from its default that the evaluation of ``dataset`` would not read.
    ``run_data``: the problems are the held-out rows of a run's own ``--dataset``, read as the run recorded."""
    from mrt_jax.data.training_data import BUNDLED

    from_file = looks_like_file(dataset)
    has_rows = from_file or dataset in BUNDLED  # problems read from rows (a file of the user's, or one we ship)
    tokenizer_from_task = args.run_dir is None and (args.model in FROM_SCRATCH or
                                                    (args.model or "").startswith(ARCH_PREFIX))
    rules = {
        "dataset_format": (not from_file or run_data,
                           "it picks the reader of a data file given by --dataset (a procedural task has none; a "
                           "bundled dataset and a run's own data are read in their recorded layout)"),
        "task": (not (has_rows and tokenizer_from_task),
                 "it picks the tokenizer of a from-scratch --model for a data file (a run or a procedural dataset "
                 "brings its own)"),
        "episode_rule": (args.episodes == 0, "--episodes=0 turns pass@1 by episode off"),
        "episode_grid": (args.episodes == 0 or (args.episode_rule or "markers") != "grid",
                         "it is the grid of --episode_rule=grid with --episodes > 0"),
        "max_extensions": (not args.extrapolate, "it bounds the budget forcing of --extrapolate"),
        "seed": (not (_sampled(args.temperature, args.n) or _sampled(args.k_temperature, args.k)) and
                 (from_file or args.run_dir is not None),
                 "every draw is greedy (--temperature/--k_temperature 0) and the problems do not depend on it"),
    }
    return [(name, why) for name, (inert, why) in rules.items()
            if inert and getattr(args, name) not in (None, defaults.get(name))]
