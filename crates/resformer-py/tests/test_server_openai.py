"""The embedding server through the official `openai` client with its default settings
(base64 on the wire), against sentence-transformers' committed MiniLM embeddings."""

import subprocess

import numpy as np
import pytest
from safetensors.numpy import load_file

from conftest import FIXTURES, MINILM, REPO, cosine, require

SERVER = REPO / "target" / "release" / "resformer-server"


@pytest.fixture(scope="module")
def server():
    require(MINILM, "bash scripts/fetch-minilm.sh")
    if not SERVER.exists():
        pytest.fail(f"{SERVER} is missing: cargo build --release -p resformer-server (scripts/test.sh does)")
    p = subprocess.Popen([str(SERVER), "--model", str(MINILM), "--port", "0", "--device", "cpu", "--api-key", "k"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = p.stdout.readline().strip()
    assert line.startswith("listening on http://127.0.0.1:"), line
    yield line.removeprefix("listening on ")
    p.terminate()
    assert p.wait(timeout=30) == 0


def test_openai_client_defaults_match_sentence_transformers(server):
    from openai import OpenAI

    client = OpenAI(base_url=f"{server}/v1", api_key="k", max_retries=0, timeout=60)
    sents = (FIXTURES / "minilm" / "sentences.txt").read_text(encoding="utf-8").splitlines()
    want = load_file(str(FIXTURES / "minilm" / "expected.safetensors"))["embeddings"]
    r = client.embeddings.create(model="all-MiniLM-L6-v2", input=sents)
    assert len(r.data) == len(sents) and r.usage.prompt_tokens > len(sents)
    for i, d in enumerate(r.data):
        v = np.asarray(d.embedding, dtype=np.float32)
        assert d.index == i and v.shape == (384,)
        assert cosine(v, want[i]) >= 0.9999 and np.abs(v - want[i]).max() <= 1e-4
    models = client.models.list()
    assert [m.id for m in models.data] == ["all-MiniLM-L6-v2"]
    bad = OpenAI(base_url=f"{server}/v1", api_key="wrong", max_retries=0)
    from openai import AuthenticationError

    with pytest.raises(AuthenticationError):
        bad.embeddings.create(model="m", input="x")
