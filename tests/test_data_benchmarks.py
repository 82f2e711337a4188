"""Math benchmark readers and TFDS builders, from small fixture files written in the published layouts."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tensorflow_datasets as tfds

from mrt_jax.data.benchmarks import SPECS, DataError, find_files, read_benchmark
from mrt_jax.data.tfds_builders import MathBenchmarks, ProceduralConfig, ProceduralTasks


def write_jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def write_parquet(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), str(path))


MATH500 = [
    {"problem": "What is $1+1$?", "solution": r"Clearly $\boxed{2}$.", "answer": "2", "subject": "Algebra",
     "level": 1, "unique_id": "test/algebra/1.json"},
    {"problem": "Simplify $\\frac{2}{4}$.", "solution": r"It is $\boxed{\frac{1}{2}}$.", "answer": "",
     "subject": "Algebra", "level": 2, "unique_id": "test/algebra/2.json"},
]


def prepare(tmp_path, config, manual, **kw):
    builder = MathBenchmarks(config=config, data_dir=str(tmp_path / "tfds"), **kw)
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual)))
    return builder


def read_split(tmp_path, config, split):
    src = tfds.data_source(f"mrt_math_benchmarks/{config}", data_dir=str(tmp_path / "tfds"), split=split)
    return sorted((r["id"].decode(), r["answer"].decode()) for r in (src[i] for i in range(len(src))))


def test_published_layouts_through_tfds(tmp_path):
    m = tmp_path / "manual"
    write_jsonl(m / "math500" / "test.jsonl", MATH500)
    write_parquet(m / "aime24" / "data" / "train-00000-of-00001.parquet",
                  [{"id": 60, "problem": "Find N.", "solution": "...", "answer": "204", "url": "u", "year": "2024"}])
    write_parquet(m / "amc23" / "data" / "train-00000-of-00001.parquet",
                  [{"id": 0, "problem": "How many?", "answer": 142.0, "url": "u"}])
    write_jsonl(m / "aime25" / "test.jsonl", [{"question": "Find k.", "answer": "70"}])
    write_jsonl(m / "minerva" / "test.jsonl", [{"question": "Speed?", "answer": "3.0e8"}])
    write_parquet(m / "gsm8k" / "main" / "train-00000-of-00001.parquet",
                  [{"question": "Sum?", "answer": "1+1=2\n#### 2"}])
    write_parquet(m / "gsm8k" / "main" / "test-00000-of-00001.parquet",
                  [{"question": "Big?", "answer": "so <<1000+1=1001>>\n#### 1,001"}])
    write_parquet(m / "numina" / "data" / "train-00000-of-00002.parquet",
                  [{"source": "olympiads", "problem": "Show x.", "solution": r"so $\boxed{x=3}$",
                    "messages": [{"role": "user", "content": "Show x."}]}])
    prepare(tmp_path, "math500", m)
    assert read_split(tmp_path, "math500", "test") == [("test/algebra/1.json", "2"),
                                                       ("test/algebra/2.json", r"\frac{1}{2}")]
    prepare(tmp_path, "aime24", m)
    assert read_split(tmp_path, "aime24", "test") == [("60", "204")]
    prepare(tmp_path, "amc23", m)
    assert read_split(tmp_path, "amc23", "test") == [("0", "142")]
    prepare(tmp_path, "aime25", m)
    assert read_split(tmp_path, "aime25", "test")[0][1] == "70"
    prepare(tmp_path, "minerva", m)
    assert read_split(tmp_path, "minerva", "test")[0][1] == "3.0e8"
    prepare(tmp_path, "gsm8k", m)
    assert [a for _, a in read_split(tmp_path, "gsm8k", "train")] == ["2"]
    src = tfds.data_source("mrt_math_benchmarks/gsm8k", data_dir=str(tmp_path / "tfds"), split="test")
    assert src[0]["answer"] == b"1001" and src[0]["solution"].startswith(b"so") and src[0]["problem"] == b"Big?"
    prepare(tmp_path, "numina", m)
    assert read_split(tmp_path, "numina", "train")[0][1] == "x=3"


def test_capitalised_aime_layout_and_json_list(tmp_path):
    write_jsonl(tmp_path / "aime_2024.jsonl", [{"ID": "2024-I-1", "Problem": "P", "Solution": "S", "Answer": 204}])
    (tmp_path / "more.json").write_text(json.dumps([{"problem": "Q", "answer": 5}]))
    records, report = read_benchmark(sorted(find_files(str(tmp_path), SPECS["aime24"])["test"]), SPECS["aime24"])
    assert [(r["id"], r["problem"], r["answer"]) for r in records] == [("2024-I-1", "P", "204"),
                                                                       (f"{tmp_path}/more.json:1", "Q", "5")]
    assert report == {"rows": 2, "kept": 2, "skipped": 0, "skipped_rows": []}


def test_bad_rows_are_named_or_counted(tmp_path):
    path = tmp_path / "test.jsonl"
    path.write_text(json.dumps(MATH500[0]) + "\n{not json\n" + json.dumps({"problem": "no answer"}) + "\n"
                    + json.dumps({"answer": "1"}) + "\n")
    spec = SPECS["math500"]
    with pytest.raises(DataError, match=rf"{path}:2: malformed JSON line"):
        read_benchmark([str(path)], spec)
    records, report = read_benchmark([str(path)], spec, on_bad_row="skip")
    assert len(records) == 1 and report["rows"] == 4 and report["skipped"] == 3
    assert f"{path}:3: no answer" in report["skipped_rows"][1]
    assert f"{path}:4: missing problem field" in report["skipped_rows"][2]
    gsm = tmp_path / "gsm" / "test.jsonl"
    write_jsonl(gsm, [{"question": "q", "answer": "no final line"}])
    with pytest.raises(DataError, match=rf"{gsm}:1: gsm8k answer field must end with a '#### <number>'"):
        read_benchmark([str(gsm)], SPECS["gsm8k"])


def test_bad_files_and_folders(tmp_path):
    empty = tmp_path / "empty" / "test.jsonl"
    empty.parent.mkdir()
    empty.write_text("\n")
    with pytest.raises(DataError, match=rf"{empty}: empty file"):
        read_benchmark([str(empty)], SPECS["math500"], on_bad_row="skip")
    with pytest.raises(DataError, match="manual_dir .*nowhere.* is not a folder"):
        find_files(str(tmp_path / "nowhere"), SPECS["aime24"])
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("x")
    with pytest.raises(DataError, match="no .jsonl/.json/.parquet files under"):
        find_files(str(tmp_path / "notes"), SPECS["aime24"])
    write_jsonl(tmp_path / "g" / "dev.jsonl", [{"question": "q", "answer": "#### 1"}])
    with pytest.raises(DataError, match="cannot tell the split of .*dev.jsonl"):
        find_files(str(tmp_path / "g"), SPECS["gsm8k"])
    bad_parquet = tmp_path / "p" / "test.parquet"
    bad_parquet.parent.mkdir()
    bad_parquet.write_bytes(b"not parquet")
    with pytest.raises(DataError, match=rf"{bad_parquet}: not a readable parquet file"):
        read_benchmark([str(bad_parquet)], SPECS["aime24"])


def test_builder_raises_or_skips_and_reports(tmp_path):
    m = tmp_path / "manual"
    (m).mkdir()
    (m / "test.jsonl").write_text(json.dumps(MATH500[0]) + "\n" + json.dumps({"problem": "p"}) + "\n")
    with pytest.raises(DataError, match=r"test.jsonl:2: no answer"):
        prepare(tmp_path, "math500", m)
    builder = prepare(tmp_path, "math500", m, on_bad_row="skip")
    assert builder.info.metadata["report"]["test"]["skipped"] == 1
    reread = MathBenchmarks(config="math500", data_dir=str(tmp_path / "tfds"))
    assert reread.info.metadata["report"]["test"]["kept"] == 1  # the report is stored with the dataset
    with pytest.raises(DataError, match="is not a folder"):
        prepare(tmp_path / "other", "math500", tmp_path / "missing")


def test_procedural_builder(tmp_path):
    cfg = ProceduralConfig(name="tiny_linear", task="linear", difficulty=1, num_train=12, num_test=5, seed=3)
    builder = ProceduralTasks(config=cfg, data_dir=str(tmp_path))
    builder.download_and_prepare()
    train, test = builder.as_data_source(split="train"), builder.as_data_source(split="test")
    assert (len(train), len(test)) == (12, 5)
    train_q = {train[i]["problem"] for i in range(12)}
    assert not train_q & {test[i]["problem"] for i in range(5)}
    from mrt_jax.data.tasks import verify
    for i in range(5):
        ex = test[i]
        assert verify("linear", ex["trace"].decode(), ex["answer"].decode()) == 1.0
        assert ex["difficulty"] == 1 and ex["task"] == b"linear"
