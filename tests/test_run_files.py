"""The run-dir path layer (``mrt_jax.run_files``) and its users on an object store: the fake GCS of
``tests/fake_gcs`` (flat names, no rename, no append), served to this process. What a writer stored is read back
from the server's own store, not through the layer under test; the working dir must stay empty (a write that
bypassed the layer would make a local ``gs:`` folder there)."""

import json

import jax
import jax.numpy as jnp
import pytest

from mrt_jax import run_files
from mrt_jax.checkpointing import Checkpointer
from mrt_jax.errors import UserError
from mrt_jax.metrics import MetricsLogger, read_event_scalars
from tests import fake_gcs

B = fake_gcs.BUCKET


@pytest.fixture
def gcs(tmp_path, monkeypatch, request):
    monkeypatch.chdir(tmp_path)
    with fake_gcs.serving() as server:
        server.prefix = request.node.name.replace("[", "_").replace("]", "")
        yield server
    assert list(tmp_path.iterdir()) == [], "a write bypassed the run-dir layer"


def _objects(gcs, under: str) -> list[str]:
    return [n[len(under) + 1:] for n in gcs.names(B) if n.startswith(under + "/")]


def test_whole_object_writes_listing_and_move(gcs):
    root = f"gs://{B}/{gcs.prefix}"
    run_files.write_json(f"{root}/a/x.json", {"k": 1})
    run_files.write_text(f"{root}/a/sub/y.txt", "y")
    assert json.loads(gcs.read(B, f"{gcs.prefix}/a/x.json")) == {"k": 1}
    assert run_files.listdir(f"{root}/a") == ["sub", "x.json"] and run_files.listdir(f"{root}/none") == []
    assert run_files.read_json(f"{root}/a/x.json") == {"k": 1} and run_files.isdir(f"{root}/a/sub")
    run_files.move_tree(f"{root}/a", f"{root}/b")  # no rename on the store: copied object by object
    assert _objects(gcs, gcs.prefix) == ["b/sub/y.txt", "b/x.json"]
    with pytest.raises(FileNotFoundError):
        run_files.read_text(f"{root}/a/x.json")


def test_listings_see_what_other_processes_write_and_delete(gcs):
    """fsspec's object-store filesystems cache each dir's listing (gcsfs by default; the fake does the same) and
    answer listdir, exists and opens from it: the layer switches that off, so a process polling a dir (the
    disaggregated roles, Orbax's step listings) sees what another process wrote or deleted there since."""
    from tests.fake_gcs.client import FakeGCSFileSystem

    root = f"gs://{B}/{gcs.prefix}"
    run_files.write_text(f"{root}/d/a", "1")
    assert run_files.listdir(f"{root}/d") == ["a"] and not run_files.exists(f"{root}/d/b")
    other = FakeGCSFileSystem(use_listings_cache=True, skip_instance_cache=True)  # another process, cache on
    assert other.ls(f"{root}/d", detail=False) == [f"{B}/{gcs.prefix}/d/a"]
    other.pipe_file(f"{root}/d/b", b"2")
    assert run_files.listdir(f"{root}/d") == ["a", "b"] and run_files.exists(f"{root}/d/b")
    assert run_files.read_text(f"{root}/d/b") == "2"
    run_files.remove(f"{root}/d/a")
    assert run_files.listdir(f"{root}/d") == ["b"] and not run_files.exists(f"{root}/d/a")
    assert other.ls(f"{root}/d", detail=False) == [f"{B}/{gcs.prefix}/d/b"]  # cached again ...
    run_files.write_text(f"{root}/d/c", "3")
    assert not other.exists(f"{root}/d/c"), "the fake must cache listings as gcsfs does"  # ... and now stale
    other.rm(f"{root}/d/b")
    assert run_files.listdir(f"{root}/d") == ["c"]
    run_files.remove(f"{root}/d/b", missing_ok=True)
    assert _objects(gcs, gcs.prefix) == ["d/c"]


def test_metrics_log_resume_and_tensorboard_on_a_bucket(gcs):
    run_dir = f"gs://{B}/{gcs.prefix}"
    logger = MetricsLogger(run_dir, 4, progress=False)
    for step in (1, 2, 3):
        logger.log(step, {"loss": float(step)})
        rows = gcs.read(B, f"{gcs.prefix}/metrics.jsonl").decode().splitlines()
        assert [json.loads(r)["step"] for r in rows] == list(range(1, step + 1))  # there after every step
    logger.close(print_summary=False)
    resumed = MetricsLogger(run_dir, 4, start_step=2, progress=False)  # step 3 is dropped, then logged anew
    resumed.log(3, {"loss": 30.0})
    resumed.close(print_summary=False)
    rows = [json.loads(r) for r in gcs.read(B, f"{gcs.prefix}/metrics.jsonl").decode().splitlines()]
    assert [(r["step"], r["loss"]) for r in rows] == [(1, 1.0), (2, 2.0), (3, 30.0)]
    assert json.loads(gcs.read(B, f"{gcs.prefix}/summary.json"))["steps_logged"] == 1
    assert len([n for n in _objects(gcs, gcs.prefix) if n.startswith("tb/events.out.tfevents.")]) == 2
    assert [v for _, v in read_event_scalars(f"{run_dir}/tb")["loss"]][-1] == 30.0


def test_checkpoints_fall_back_and_quarantine_on_a_bucket(gcs):
    directory = f"gs://{B}/{gcs.prefix}/ck"
    ckpt = Checkpointer(directory, save_every=1, keep_last=3, async_save=False)
    for step in (1, 2):
        ckpt.maybe_save(step, {"w": jnp.full((4,), float(step))}, json_items={"step": step})
    ckpt.close()
    # step 2 loses its meta item: restore must fall back to step 1 and move step 2 aside (copy + delete)
    gcs.store.objects.pop((B, f"{gcs.prefix}/ck/2/meta/metadata"))
    ckpt = Checkpointer(directory, save_every=1, keep_last=3, async_save=False)
    state, items, step = ckpt.restore({"w": jax.ShapeDtypeStruct((4,), jnp.float32)})
    ckpt.close()
    assert step == 1 and items == {"step": 1} and float(state["w"][0]) == 1.0
    names = gcs.names(B)
    assert not [n for n in names if n.startswith(f"{gcs.prefix}/ck/2/")]
    assert [n for n in names if n.startswith(f"{gcs.prefix}/ck.quarantine/2-")]


@pytest.mark.parametrize("run_dir", ["nosuch://bucket/run", "s3://bucket/run"])
def test_run_dir_without_a_filesystem_is_a_user_error(run_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match=r"^--run_dir='.*' cannot be written: ") as e:
        run_files.check_writable(run_dir)
    assert "\n" not in str(e.value) and list(tmp_path.iterdir()) == []
