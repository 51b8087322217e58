"""The exception classes, what raises each, and pickling of errors and objects."""

import os
import pickle

import numpy as np
import pytest

import resformer
from conftest import FIXTURES, MINILM, REPO, manifest, require, split_fixture


def test_the_hierarchy():
    assert issubclass(resformer.ShapeError, (resformer.ResformerError, ValueError))
    assert issubclass(resformer.ModelLoadError, resformer.ResformerError) and issubclass(resformer.ModelLoadError, OSError)
    assert issubclass(resformer.DeviceError, resformer.ResformerError) and issubclass(resformer.DeviceError, RuntimeError)


@pytest.mark.parametrize("cls", [resformer.ResformerError, resformer.ShapeError, resformer.ModelLoadError, resformer.DeviceError])
def test_errors_pickle_with_their_message(cls):
    e = cls("model.safetensors: tensor `x` expected shape [2], found [3]")
    back = pickle.loads(pickle.dumps(e))
    assert type(back) is cls and str(back) == str(e) and back.args == e.args


def test_what_raises_which(tmp_path):
    with pytest.raises(FileNotFoundError):
        resformer.SentenceEncoder(tmp_path / "nothing", device="cpu")
    with pytest.raises(FileNotFoundError):
        resformer.TransformerStack.from_safetensors(tmp_path / "none.safetensors", 2, device="cpu")
    garbage = tmp_path / "w.safetensors"
    garbage.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!")
    with pytest.raises(resformer.ModelLoadError, match="not a valid safetensors file") as e:
        resformer.TransformerStack.from_safetensors(garbage, 2, device="cpu")
    assert str(garbage) in str(e.value) and "\n" not in str(e.value)
    bad_model = tmp_path / "model"
    bad_model.mkdir()
    (bad_model / "config.json").write_text('{"model_type": "roberta"}')
    with pytest.raises(resformer.ModelLoadError, match="roberta"):
        resformer.SentenceEncoder(bad_model, device="cpu")
    with pytest.raises(resformer.DeviceError, match="gpu:7|no adapter|matches no adapter"):
        resformer.SentenceEncoder(FIXTURES / "bert" / "h32_max_relu", device="gpu:7")
    with pytest.raises(resformer.ShapeError, match="bogus"):
        resformer.SentenceEncoder(FIXTURES / "bert" / "h32_max_relu", device="bogus")
    with pytest.raises(TypeError, match="device must be a str"):
        resformer.SentenceEncoder(FIXTURES / "bert" / "h32_max_relu", device=0)


def test_objects_pickle_by_reloading_with_the_same_options(device):
    d = FIXTURES / "bert" / "h48_cls_seq64"
    enc = resformer.SentenceEncoder(d, device=device)
    back = pickle.loads(pickle.dumps(enc))
    assert back.device == enc.device and np.array_equal(back.encode(["a b", "c"]), enc.encode(["a b", "c"]))
    row = next(r for r in manifest(FIXTURES / "encoder") if r["name"] == "pre_relu_padded_causal_eps1e-6")
    path = FIXTURES / "encoder" / f"{row['name']}.safetensors"
    state, x, want, mask = split_fixture(path)
    opts = dict(norm_first=True, layer_norm_eps=row["eps"], batch_first=True, device=device)
    for stack in (
        resformer.TransformerStack.from_state_dict(state, row["heads"], **opts),
        resformer.TransformerStack.from_safetensors(path, row["heads"], **opts),
    ):
        back = pickle.loads(pickle.dumps(stack))
        assert np.array_equal(back(x, mask, is_causal=True), stack(x, mask, is_causal=True))
        assert np.abs(back(x, mask, is_causal=True) - want).max() <= 1e-4
    clf = resformer.ViTClassifier(REPO / "assets" / "vit-digits", device=device)
    img = np.arange(64, dtype=np.float32).reshape(8, 8) % 17
    assert np.array_equal(pickle.loads(pickle.dumps(clf)).predict(img), clf.predict(img))
