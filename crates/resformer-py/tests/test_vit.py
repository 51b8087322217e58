"""ViTClassifier against PyTorch's float64 logits on the digits' whole test split."""

import json

import numpy as np
import pytest
from safetensors.numpy import load_file

import resformer
from conftest import DIGITS, FIXTURES, REPO, require

MODEL = REPO / "assets" / "vit-digits"


def test_vit_logits_match_pytorch(device):
    require(DIGITS, "bash scripts/fetch-digits.sh")
    data = np.loadtxt(DIGITS, delimiter=",", dtype=np.float32)
    want = load_file(str(FIXTURES / "vit_digits" / "expected.safetensors"))
    idx = want["test_indices"].astype(int)
    assert list(idx) == json.loads((MODEL / "split.json").read_text())["test_indices"]
    images = data[idx, :64].reshape(-1, 8, 8)
    clf = resformer.ViTClassifier(MODEL, device=device)
    logits = clf.predict(images)
    assert logits.shape == (len(idx), 10) and logits.dtype == np.float32
    assert np.abs(logits - want["logits"]).max() <= 1e-4
    assert np.array_equal(clf.classify(images), want["predictions"].astype(int))
    # one image, flat images, probabilities
    assert np.allclose(clf.predict(images[0]), logits[0], atol=1e-5)
    assert np.allclose(clf.predict(images.reshape(len(idx), 64)), logits, atol=1e-5)
    p = clf.predict_proba(images[:4])
    assert np.allclose(p.sum(axis=1), 1.0, atol=1e-6)
    with pytest.raises(resformer.ShapeError, match=r"expected \(N, 8, 8\)"):
        clf.predict(np.zeros((2, 7, 7)))
