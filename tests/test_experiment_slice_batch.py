"""Per-slice batch defaults: with ``--tpu=<slice>`` and default flags the job's batch fits the slice (rounded up,
with a note); every misfit is refused at parse time with one line naming the flag to set and its value."""

import pytest

from experiments.config import PRESETS, parse_args
from experiments.slice_batch import fitting_prompts, misfit, prompts_multiple
from mrt_jax.distributed.slices import SLICES

TPU_SLICES = [name for name, s in SLICES.items() if s.platform == "tpu"]


def _error(capsys, argv) -> str:
    with pytest.raises(SystemExit) as e:
        parse_args(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_v5e_64_defaults_are_rounded_up_with_a_note(capsys):
    cfg = parse_args(["--tpu=v5e-64"])
    assert (cfg.prompts_per_step, cfg.group_size) == (16, 4)  # 16 hosts sample 1 prompt each; 64 rows, 64 chips
    err = capsys.readouterr().err
    assert "note: --tpu=v5e-64" in err and "--prompts_per_step 8 -> 16" in err


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("tpu", TPU_SLICES)
def test_every_slice_and_preset_fits_by_default(tpu, preset):
    cfg = parse_args([f"--tpu={tpu}", f"--preset={preset}"])
    spec = SLICES[tpu]
    assert cfg.prompts_per_step % spec.hosts == 0
    assert cfg.prompts_per_step * cfg.group_size % spec.chips == 0
    assert cfg.prompts_per_step >= PRESETS[preset].get("prompts_per_step", 8)


def test_a_slice_that_already_fits_keeps_the_preset(capsys):
    assert parse_args(["--tpu=v5e-8"]).prompts_per_step == 8
    assert parse_args(["--tpu=v5p-16"]).prompts_per_step == 8
    assert "note" not in capsys.readouterr().err


def test_explicit_misfit_names_the_flag_and_value(capsys):
    line = _error(capsys, ["--tpu=v5e-64", "--prompts_per_step=8"])
    assert "--prompts_per_step=8 does not fit --tpu=v5e-64 (16 hosts, 64 chips)" in line
    assert "set --prompts_per_step=16" in line
    line = _error(capsys, ["--tpu=v5e-8", "--prompts_per_step=3"])  # 12 rows over 8 chips
    assert "set --prompts_per_step=4" in line
    line = _error(capsys, ["--tpu=v5e-64", "--prompts_per_step=16", "--group_size=2"])  # 32 rows, 64 chips
    assert "set --prompts_per_step=32" in line


def test_group_size_given_prompts_rounded_for_it():
    cfg = parse_args(["--tpu=v5e-64", "--group_size=8"])
    assert cfg.prompts_per_step == 16 and cfg.prompts_per_step * 8 % 64 == 0
    cfg = parse_args(["--tpu=v5e-64", "--group_size=2"])
    assert cfg.prompts_per_step == 32  # 16 hosts, 64 chips: 64 rows of 2 samples


def test_other_misfits_name_the_value(capsys):
    assert "set --prompts_per_step=9" in _error(capsys, ["--prompts_per_step=7", "--num_processes=3",
                                                        "--coordinator=127.0.0.1:1234"])
    assert "set --micro_batches to one of 1, 2, 4, 8, 16, 32" in _error(capsys, ["--micro_batches=3"])
    assert "--tpu: unknown slice 'v7-8'" in _error(capsys, ["--tpu=v7-8"])


def test_pure_rules():
    assert prompts_multiple(16, 64, 4) == 16 and prompts_multiple(1, 8, 4) == 2 and prompts_multiple(2, 8, 8) == 2
    assert fitting_prompts(8, 16, 64, 4) == 16 and fitting_prompts(17, 16, 64, 4) == 32
    assert misfit(16, 4, "v5e-64", 16, 64) is None
    assert "set --prompts_per_step=16" in misfit(8, 4, "v5e-64", 16, 64)


def test_parsing_a_slice_imports_no_jax():
    """The job sets JAX_PLATFORMS after parsing its flags; JAX reads it when imported, so parsing must not."""
    import subprocess
    import sys

    code = ("import sys; from experiments.config import parse_args; parse_args(['--tpu=v5e-64']); "
            "print('jax' in sys.modules)")
    root = __file__.rsplit("/tests/", 1)[0]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root)
    assert out.stdout.strip() == "False"
