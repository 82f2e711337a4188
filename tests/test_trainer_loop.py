"""The one step loop (mrt_jax.trainer.run_steps) with stand-ins for the learner, data, checkpoints and stop
signal: the order of its parts, when it evaluates and saves, and how it stops."""

from mrt_jax.metrics import StepTimer
from mrt_jax.trainer import StepSource, run_steps


class Recorder:
    def __init__(self, stop_at=None):
        self.events, self.logged, self.saved, self.stop_at = [], [], [], stop_at

    # logger
    def log(self, step, metrics):
        self.logged.append((step, metrics))

    # checkpointer
    def maybe_save(self, step, state, items, metrics=None, force=False):
        self.saved.append((step, state, items["step"], force))

    def wait(self):
        self.events.append("wait")

    # preemption guard
    def should_stop(self):
        return self.stop_at is not None and self.logged[-1][0] >= self.stop_at


def loop(rec, *, start=0, steps=5, eval_every=2, fetch=None):
    def default_fetch(done):
        rec.events.append(f"fetch{done}")
        return {"rows": done}, {"reward": float(done)}

    def learn(state, rows):
        rec.events.append(f"learn{rows['rows']}")
        return state + 1, {"loss": 0.5}

    def sync(step, state):
        rec.events.append(f"sync{step}")

    def evaluate(tag, step):
        rec.events.append(f"eval:{tag}")
        return {"accuracy": step / 10}

    source = StepSource(fetch=fetch or default_fetch, sync=sync, items=lambda step: {"step": step})
    return run_steps(start, source, learn, start=start, steps=steps, eval_every=eval_every, evaluate=evaluate,
                     timer=StepTimer(), logger=rec, ckpt=rec, guard=rec)


def test_each_step_fetches_learns_syncs_then_evaluates_logs_and_saves():
    rec = Recorder()
    state, step, last_eval = loop(rec)
    assert (state, step, last_eval) == (5, 5, {"accuracy": 0.5})
    assert rec.events[:7] == ["fetch0", "learn0", "sync1", "fetch1", "learn1", "sync2", "eval:step2"]
    assert [e for e in rec.events if e.startswith("eval")] == ["eval:step2", "eval:step4", "eval:step5"]
    step2 = dict(rec.logged)[2]
    assert step2["reward"] == 1.0 and step2["loss"] == 0.5 and step2["eval_accuracy"] == 0.2
    assert {"time/sample", "time/learn", "time/sync", "time/eval"} <= set(step2)
    assert [(s, force) for s, _, _, force in rec.saved] == [(1, False), (2, False), (3, False), (4, False), (5, True)]


def test_a_resumed_loop_continues_from_its_step():
    rec = Recorder()
    state, step, _ = loop(rec, start=3)
    assert (state, step) == (5, 5) and rec.events[0] == "fetch3" and [s for s, _ in rec.logged] == [4, 5]


def test_a_stop_request_saves_the_step_and_leaves():
    rec = Recorder(stop_at=2)
    state, step, _ = loop(rec)
    assert step == 2 and rec.saved[-1][0] == 2 and rec.saved[-1][3] is True and rec.events[-1] == "wait"


def test_no_data_while_stopping_saves_the_step_reached():
    rec = Recorder()
    state, step, last_eval = loop(rec, fetch=lambda done: None if done == 1 else ({"rows": done}, {}))
    assert (step, last_eval) == (1, {}) and rec.saved[-1] == (1, 1, 1, True)


def test_each_step_logs_its_compilations():
    import jax
    import jax.numpy as jnp

    rec = Recorder()
    double = jax.jit(lambda x: x * 2)  # a fresh function: its first call compiles, later calls of the shape do not
    shapes = {1: 3, 2: 3, 3: 5}  # step 3 sees a new shape: it compiles again

    def fetch(done):
        return {"rows": done}, {}

    def learn(state, rows):
        double(jnp.ones(shapes[state + 1])).block_until_ready()
        return state + 1, {"loss": 0.0}

    source = StepSource(fetch=fetch, sync=lambda step, state: None, items=lambda step: {"step": step})
    run_steps(0, source, learn, start=0, steps=3, eval_every=10, evaluate=lambda tag, step: {}, timer=StepTimer(),
              logger=rec, ckpt=rec, guard=rec)
    compiles = {step: m["compiles"] for step, m in rec.logged}
    assert compiles[1] >= 1 and compiles[2] == 0 and compiles[3] >= 1
