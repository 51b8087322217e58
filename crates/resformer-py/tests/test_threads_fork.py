"""Threads share objects and overlap (the GIL is released in every forward); a forked
child refuses a device its parent opened instead of hanging."""

import multiprocessing as mp
import threading
import time

import numpy as np
import pytest

import resformer
from conftest import FIXTURES, manifest, split_fixture


def test_eight_threads_share_one_encoder_and_one_stack(device):
    enc = resformer.SentenceEncoder(FIXTURES / "bert" / "h64_mean_norm", device=device)
    row = next(r for r in manifest(FIXTURES / "encoder") if r["name"] == "post_relu_padded_seq_first")
    state, x, want, mask = split_fixture(FIXTURES / "encoder" / "post_relu_padded_seq_first.safetensors")
    stack = resformer.TransformerStack.from_state_dict(state, row["heads"], device=device)
    texts = [[f"thread {i} sentence {j} " + "word " * (i + j) for j in range(6)] for i in range(8)]
    alone = [enc.encode(t) for t in texts]
    y0 = stack(x, mask)
    errors, done = [], []

    def work(i):
        try:
            for _ in range(5):
                assert np.allclose(enc.encode(texts[i]), alone[i], atol=1e-5)
                assert np.array_equal(stack(x, mask), y0)
            done.append(i)
        except BaseException as e:  # report in the main thread
            errors.append((i, e))

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(8)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 120
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), "threads still running after 120 s: a deadlock?"
    assert errors == [] and sorted(done) == list(range(8))
    assert np.abs(y0 - want).max() <= 1e-4


def test_gil_is_released_during_a_forward():
    # while one thread runs forwards, the main thread keeps running Python
    row = next(r for r in manifest(FIXTURES / "block") if r["name"] == "seq37_e96_h4")
    state, x, _, _ = split_fixture(FIXTURES / "block" / "seq37_e96_h4.safetensors")
    stack = resformer.TransformerStack.from_state_dict(state, row["heads"], device="reference")
    big = np.repeat(x, 16, axis=1)
    t0 = time.perf_counter()
    stack(big)
    one = time.perf_counter() - t0
    ticks = []
    worker = threading.Thread(target=lambda: [stack(big) for _ in range(3)])
    worker.start()
    while worker.is_alive():
        ticks.append(time.perf_counter())
        time.sleep(0.001)
    worker.join()
    # with the GIL held for a whole forward the main thread could not tick for `one` seconds
    gaps = np.diff(ticks) if len(ticks) > 1 else np.array([3 * one])
    assert len(ticks) > 10 and gaps.max() < max(one / 2, 0.05), (len(ticks), gaps.max(), one)


def _child(conn, enc):
    try:
        enc.encode(["hello"])
        conn.send("no error")
    except BaseException as e:
        conn.send(f"{type(e).__name__}: {e}")


def _child_new(conn, path):
    try:
        resformer.SentenceEncoder(path, device="cpu").encode(["hello"])
        conn.send("no error")
    except BaseException as e:
        conn.send(f"{type(e).__name__}: {e}")


@pytest.mark.parametrize("target", ["use", "new"])
def test_a_forked_child_gets_a_device_error_not_a_hang(target):
    path = FIXTURES / "bert" / "h32_max_relu"
    enc = resformer.SentenceEncoder(path, device="cpu")
    enc.encode(["warm the thread pool"])
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe()
    args = (child, enc) if target == "use" else (child, path)
    p = ctx.Process(target=_child if target == "use" else _child_new, args=args)
    p.start()
    got = parent.recv() if parent.poll(60) else "no answer in 60 s"
    p.join(10)
    if p.is_alive():
        p.kill()
    assert got.startswith("DeviceError:") and "forked" in got and "spawn" in got, got
