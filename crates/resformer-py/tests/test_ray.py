"""resformer.ray on a local Ray (one ray.init(num_cpus=2) per session): every row once, its
vector equal to single-process encode, other columns untouched, bad rows named, the device
mapping, and scripts/embed_corpus.py round-tripping JSONL to Parquet."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest

import ray  # noqa: E402  (scripts/test-python.sh installs ray[data])
import ray.data  # noqa: E402

import resformer  # noqa: E402
import resformer.ray as rr  # noqa: E402
from conftest import FIXTURES, REPO  # noqa: E402

MODEL = FIXTURES / "bert" / "h64_mean_norm"


@pytest.fixture(scope="session")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield
    ray.shutdown()


def corpus(n):
    rng = np.random.default_rng(7)
    words = "the engine reads every word of this sentence and then some more text about vectors".split()
    return [
        {"id": i, "text": " ".join(rng.choice(words, size=int(rng.integers(1, 60)))), "source": f"doc-{i % 13}"}
        for i in range(n)
    ]


def test_every_row_comes_back_once_with_its_own_vector(local_ray):
    rows = corpus(1200)
    ds = ray.data.from_items(rows)
    out = rr.embed_dataset(ds, MODEL, num_actors=2, batch_size=50, device="cpu").take_all()
    assert sorted(r["id"] for r in out) == list(range(1200))
    enc = resformer.SentenceEncoder(MODEL, device="cpu")
    want = enc.encode([r["text"] for r in rows], batch_size=64)
    for r in out:
        i = r["id"]
        assert r["text"] == rows[i]["text"] and r["source"] == rows[i]["source"]
        v = np.asarray(r["embedding"])
        assert v.dtype == np.float32 and v.shape == (64,)
        assert np.abs(v - want[i]).max() <= 1e-6, i


def test_the_embedder_class_with_map_batches_and_compute(local_ray):
    ds = ray.data.from_items(corpus(40))
    out = ds.map_batches(
        rr.Embedder,
        fn_constructor_kwargs={"model": str(MODEL), "device": "cpu", "output_column": "vec"},
        compute=ray.data.ActorPoolStrategy(size=1),
        batch_size=16,
        num_cpus=1,
    )
    batch = out.take_batch(40)
    assert batch["vec"].shape == (40, 64) and batch["vec"].dtype == np.float32
    assert set(batch) == {"id", "text", "source", "vec"}


@pytest.mark.parametrize("bad", [None, ""])
def test_a_bad_row_fails_its_batch_naming_the_row(local_ray, bad):
    rows = corpus(30)
    rows[17]["text"] = bad
    ds = ray.data.from_items(rows)
    with pytest.raises(Exception) as e:
        rr.embed_dataset(ds, MODEL, num_actors=1, batch_size=10, device="cpu").take_all()
    what = "None" if bad is None else "an empty string"
    # its index inside whatever batch Ray cut (blocks split the 30 rows), the column, what it is
    assert re.search(rf"row \d+ of this batch: column 'text' is {what}", str(e.value)), str(e.value)
    # and directly: the ShapeError itself
    emb = rr.Embedder(str(MODEL), device="cpu")
    with pytest.raises(resformer.ShapeError, match=f"row 1 of this batch: column 'text' is {what}"):
        emb({"text": np.array(["fine", bad], dtype=object)})


def test_gpu_ids_map_to_the_adapter_index_and_cpus_to_threads():
    assert rr.actor_device("auto", [3], 1.0) == ("gpu:3", None)
    assert rr.actor_device("auto", ["1", "2"], 4.0) == ("gpu:1", None)
    assert rr.actor_device("auto", [], 3.0) == ("cpu", 3)
    assert rr.actor_device("auto", [], 0.5) == ("cpu", 1)
    assert rr.actor_device("gpu:0", [], 1.0) == ("gpu:0", None)
    assert rr.actor_device("cpu", [5], 2.0) == ("cpu", 2)


def test_embedder_reads_its_gpu_from_ray(monkeypatch):
    # a faked GPU actor: ray.get_gpu_ids() says 2, so the encoder opens gpu:2
    opened = {}

    class FakeEncoder:
        def __init__(self, model, device, threads=None):
            opened["device"], opened["threads"] = device, threads

    monkeypatch.setattr(rr.ray, "is_initialized", lambda: True)
    monkeypatch.setattr(rr.ray, "get_gpu_ids", lambda: [2])
    monkeypatch.setattr(rr, "SentenceEncoder", FakeEncoder)
    emb = rr.Embedder(str(MODEL))
    assert opened["device"] == "gpu:2" and emb.device == "gpu:2"
    assert opened["threads"] is None  # a GPU actor's engine needs no CPU thread pool


def test_embed_corpus_script_round_trips_jsonl_to_parquet(local_ray, tmp_path):
    import pyarrow.parquet as pq

    rows = corpus(120)
    src = tmp_path / "corpus.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    dst = tmp_path / "out"
    run = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "embed_corpus.py"), str(src), str(dst), "--model", str(MODEL),
         "--actors", "1", "--batch-size", "32", "--device", "cpu"],
        capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "embedded 120 rows" in run.stdout and "rows/s" in run.stdout, run.stdout
    table = pq.read_table(dst)
    assert table.num_rows == 120 and set(table.column_names) >= {"id", "text", "source", "embedding"}
    got = {r["id"]: r for r in table.to_pylist()}
    enc = resformer.SentenceEncoder(MODEL, device="cpu")
    want = enc.encode([r["text"] for r in rows])
    for r in rows:
        v = np.asarray(got[r["id"]]["embedding"], dtype=np.float32).reshape(-1)
        assert got[r["id"]]["text"] == r["text"] and np.abs(v - want[r["id"]]).max() <= 1e-6
