"""``benchmarks.rl_step_cpu`` runs the job's own step end to end (it once broke when the job's data stream changed
and nothing ran it): the tiny preset, MRT and GRPO, one warm-up and one timed step each."""

from benchmarks import rl_step_cpu


def test_rl_step_benchmark_times_both_algorithms_on_the_jobs_step():
    out = rl_step_cpu.main(["--quick", "--steps=2", "--label=test"])
    assert out["label"] == "test" and set(out["results"]) == {"mrt", "grpo"} and out["mrt_over_grpo"] > 0
    mrt, grpo = out["results"]["mrt"], out["results"]["grpo"]
    assert len(mrt["compiles_per_step"]) == 2 and mrt["timed_steps"] == 1
    assert mrt["fork_s"] > 0 and grpo["fork_s"] == 0  # only MRT forks the meta-prover
    assert mrt["step_s"] >= mrt["sample_s"] and mrt["compiles_per_step"][0] > 0
