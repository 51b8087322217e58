"""SentenceEncoder against sentence-transformers' committed outputs, and encode's contract."""

import pickle
import signal
import sys
import threading
import time
import types

import numpy as np
import pytest
from safetensors.numpy import load_file

import resformer
from conftest import FIXTURES, MINILM, cosine, require


@pytest.fixture
def minilm(device):
    require(MINILM, "bash scripts/fetch-minilm.sh")
    return resformer.SentenceEncoder(MINILM, device=device)


def sentences(dir):
    return (dir / "sentences.txt").read_text(encoding="utf-8").splitlines()


def test_minilm_matches_sentence_transformers(minilm, device):
    sents = sentences(FIXTURES / "minilm")
    want = load_file(str(FIXTURES / "minilm" / "expected.safetensors"))
    got = minilm.encode(sents, batch_size=5)
    assert got.shape == (len(sents), 384) and got.dtype == np.float32
    for i, s in enumerate(sents):
        assert minilm.tokenize(s) == [int(v) for v in want[f"ids_{i}"]], s
        c = cosine(got[i], want["embeddings"][i])
        assert c >= 0.9999, (device, i, c)
        assert np.abs(got[i] - want["embeddings"][i]).max() <= 1e-4
    # the adapter named, or the CPU backend
    assert ("CPU backend" in minilm.device) == (device == "cpu"), minilm.device


def test_threads_give_the_cpu_backend_its_own_pool_and_the_same_vectors():
    require(MINILM, "bash scripts/fetch-minilm.sh")
    sents = sentences(FIXTURES / "minilm")
    shared = resformer.SentenceEncoder(MINILM, device="cpu")
    one = resformer.SentenceEncoder(MINILM, device="cpu", threads=1)
    assert "1 thread)" in one.device, one.device
    np.testing.assert_allclose(one.encode(sents), shared.encode(sents), atol=1e-6, rtol=0)
    again = pickle.loads(pickle.dumps(one))
    assert again.device == one.device
    for bad in (0, -2, 1.5, True, "2"):
        with pytest.raises(ValueError, match="threads must be a positive int"):
            resformer.SentenceEncoder(MINILM, device="cpu", threads=bad)


@pytest.mark.parametrize("name", ["h32_max_relu", "h40_gelu_new_mean", "h48_cls_seq64", "h64_mean_norm"])
def test_berts_of_other_shapes_match_sentence_transformers(name, device):
    d = FIXTURES / "bert" / name
    enc = resformer.SentenceEncoder(d, device=device)
    want = load_file(str(d / "expected.safetensors"))
    sents = sentences(d)
    got = enc.encode(sents)
    toks = enc.encode(sents, output_value="token_embeddings")
    assert enc.get_sentence_embedding_dimension() == want["embeddings"].shape[1]
    for i in range(len(sents)):
        assert cosine(got[i], want["embeddings"][i]) >= 0.9999
        assert np.abs(got[i] - want["embeddings"][i]).max() <= 1e-4
        assert toks[i].shape == want[f"tokens_{i}"].shape
        assert np.abs(toks[i] - want[f"tokens_{i}"]).max() <= 1e-4
    assert enc.max_seq_length == (64 if "seq64" in name else {"h32_max_relu": 96}.get(name, 128))


def test_encode_shapes_order_and_options(minilm):
    sents = ["a much longer sentence than the others, with many words in it", "b", "medium length one", "", "b"]
    all_at_once = minilm.encode(sents, batch_size=64)
    # batched by length, returned in input order, equal to one at a time
    assert np.allclose(minilm.encode(sents, batch_size=2), all_at_once, atol=1e-5)
    for i, s in enumerate(sents):
        one = minilm.encode(s)
        assert one.shape == (384,) and np.allclose(one, all_at_once[i], atol=1e-5)
    assert np.array_equal(all_at_once[1], all_at_once[4])
    assert minilm.encode([]).shape == (0, 384)
    assert minilm.encode([], output_value="token_embeddings") == []
    toks = minilm.encode(sents, output_value="token_embeddings")
    assert [t.shape[0] for t in toks] == [len(minilm.tokenize(s)) for s in sents]
    assert all(t.dtype == np.float32 and t.shape[1] == 384 for t in toks)
    both = minilm.encode(sents[:2], output_value=None)
    assert np.allclose(both[0]["sentence_embedding"], all_at_once[0]) and both[1]["token_embeddings"].shape[0] == 3
    # normalize_embeddings: unit rows (MiniLM's own Normalize already makes them so; truncating breaks it)
    cut = minilm.encode(sents, truncate_dim=64)
    assert cut.shape == (5, 64) and not np.allclose(np.linalg.norm(cut, axis=1), 1.0)
    unit = minilm.encode(sents, truncate_dim=64, normalize_embeddings=True)
    assert np.allclose(np.linalg.norm(unit, axis=1), 1.0, atol=1e-6)
    assert np.allclose(unit, cut / np.linalg.norm(cut, axis=1, keepdims=True), atol=1e-6)
    rows = minilm.encode(sents[:2], convert_to_numpy=False)
    assert isinstance(rows, list) and len(rows) == 2 and rows[0].shape == (384,)
    assert np.allclose(minilm.encode("x", prompt="query: "), minilm.encode("query: x"))


def test_encode_refuses_what_it_cannot_do(minilm):
    with pytest.raises(TypeError, match="unexpected keyword argument 'convert_to_tensors'"):
        minilm.encode(["a"], convert_to_tensors=True)
    with pytest.raises(TypeError, match=r"sentences\[1\] is NoneType, not str"):
        minilm.encode(["a", None])
    with pytest.raises(ValueError, match="batch_size"):
        minilm.encode(["a"], batch_size=0)
    with pytest.raises(ValueError, match="output_value"):
        minilm.encode(["a"], output_value="cls")
    with pytest.raises(ValueError, match="precision"):
        minilm.encode(["a"], precision="int8")
    with pytest.raises(ValueError, match="device is chosen"):
        minilm.encode(["a"], device="cuda")


def test_convert_to_tensor_imports_torch_only_then(minilm, monkeypatch):
    # a stand-in torch: what encode hands it, and that nothing imported it before
    calls = []
    fake = types.ModuleType("torch")
    fake.from_numpy = lambda a: calls.append(a) or ("tensor", a)
    monkeypatch.setitem(sys.modules, "torch", fake)
    out = minilm.encode(["a", "b"])
    assert isinstance(out, np.ndarray) and calls == []
    kind, arr = minilm.encode(["a", "b"], convert_to_tensor=True)
    assert kind == "tensor" and arr.shape == (2, 384) and arr.dtype == np.float32 and arr.flags.c_contiguous
    assert np.allclose(arr, out)
    toks = minilm.encode(["a b"], output_value="token_embeddings", convert_to_tensor=True)
    assert toks[0][0] == "tensor" and toks[0][1].shape == (4, 384)


def test_show_progress_bar_uses_tqdm_when_installed(minilm, monkeypatch):
    seen = []

    def tqdm(iterable, **kw):
        seen.append(kw)
        return iterable

    auto = types.ModuleType("tqdm.auto")
    auto.tqdm = tqdm
    monkeypatch.setitem(sys.modules, "tqdm", types.ModuleType("tqdm"))
    monkeypatch.setitem(sys.modules, "tqdm.auto", auto)
    minilm.encode(["a"] * 5, batch_size=2)
    assert seen == []
    minilm.encode(["a"] * 5, batch_size=2, show_progress_bar=True)
    assert seen == [{"desc": "Batches", "total": 3}]


def test_ctrl_c_between_batches_raises_keyboard_interrupt():
    require(MINILM, "bash scripts/fetch-minilm.sh")
    enc = resformer.SentenceEncoder(MINILM, device="cpu")
    long = ["the engine reads every word of this sentence " * 10] * 400
    one_batch = time.perf_counter()
    enc.encode(long[:8], batch_size=8)
    one_batch = time.perf_counter() - one_batch
    timer = threading.Timer(max(3 * one_batch, 0.2), lambda: signal.raise_signal(signal.SIGINT))
    t = time.perf_counter()
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        enc.encode(long, batch_size=8)  # 50 batches
    took = time.perf_counter() - t
    timer.cancel()
    assert took < 25 * one_batch + 1.0, f"interrupted only after {took:.1f} s (a batch takes {one_batch:.2f} s)"
