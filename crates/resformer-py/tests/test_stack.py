"""TransformerStack against PyTorch's fixtures (the engine's block stacks and
nn.TransformerEncoder itself), and its input rules: shapes, dtypes, layouts, masks, copies."""

import numpy as np
import pytest

import resformer
from conftest import FIXTURES, manifest, split_fixture

ATOL = 1e-4  # PyTorch computed the fixtures in float64


def cases():
    for kind in ("block", "encoder"):
        for row in manifest(FIXTURES / kind):
            yield pytest.param(kind, row, id=f"{kind}-{row['name']}")


def options(row, device):
    return dict(norm_first=row["norm_first"], activation="gelu" if row["gelu"] else "relu",
                layer_norm_eps=row["eps"], batch_first=row["batch_first"], device=device)


@pytest.mark.parametrize("kind,row", list(cases()))
def test_stack_matches_pytorch(kind, row, device):
    path = FIXTURES / kind / f"{row['name']}.safetensors"
    state, x, want, mask = split_fixture(path)
    for stack in (
        resformer.TransformerStack.from_state_dict(state, row["heads"], **options(row, device)),
        resformer.TransformerStack.from_safetensors(path, row["heads"], **options(row, device)),
    ):
        y = stack(x, key_padding_mask=mask, is_causal=row["causal"])
        assert y.shape == x.shape and y.dtype == np.float32
        err = np.abs(y - want).max()
        assert err <= ATOL, f"{row['name']} on {stack.device}: {err:.2e}"


def encoder_fixture(name="pre_gelu_batch_first_padded_norm"):
    row = next(r for r in manifest(FIXTURES / "encoder") if r["name"] == name)
    return row, split_fixture(FIXTURES / "encoder" / f"{name}.safetensors")


def test_inputs_of_any_layout_and_dtype_give_the_same_result(device):
    row, (state, x, want, mask) = encoder_fixture()
    stack = resformer.TransformerStack.from_state_dict(state, row["heads"], **options(row, device))
    base = stack(x, mask)
    ro = x.copy()
    ro.flags.writeable = False
    noncontig = np.asfortranarray(x)
    strided = np.repeat(x, 2, axis=2)[:, :, ::2]
    assert not noncontig.flags.c_contiguous and not strided.flags.c_contiguous
    for variant in (ro, noncontig, strided, x.astype(np.float64), x.tolist()):
        assert np.abs(stack(variant, mask) - base).max() <= 1e-6
    # masks: bool, integers, floats; nonzero = padded
    for m in (mask, mask.astype(np.uint8), mask.astype(np.int64), mask.astype(np.float32), np.where(mask, -np.inf, 0.0)):
        assert np.array_equal(stack(x, m), base)
    assert np.abs(base - want).max() <= ATOL
    # a mask changes the result where it should
    assert not np.allclose(stack(x), base)


def test_output_is_a_new_c_contiguous_float32_array_numpy_and_torch_share():
    row, (state, x, want, mask) = encoder_fixture()
    stack = resformer.TransformerStack.from_state_dict(state, row["heads"], **options(row, "cpu"))
    a, b = stack(x, mask), stack(x, mask)
    for y in (a, b):
        assert y.dtype == np.float32 and y.flags.c_contiguous and y.flags.writeable and y.flags.aligned
    # new buffers, not views of the input or of each other
    addr = lambda v: v.__array_interface__["data"][0]
    assert len({addr(a), addr(b), addr(x)}) == 3
    # what torch.from_numpy does: wrap the same memory through the buffer protocol
    shared = np.frombuffer(memoryview(a), dtype=np.float32).reshape(a.shape)
    assert addr(shared) == addr(a)
    a[0, 0, 0] = 123.0
    assert shared[0, 0, 0] == 123.0


def test_c_contiguous_float32_inputs_are_not_copied(monkeypatch):
    from resformer import _as_f32

    x = np.ones((3, 4), dtype=np.float32)
    assert _as_f32("x", x) is x
    ro = x.copy()
    ro.flags.writeable = False
    assert _as_f32("x", ro) is ro
    assert _as_f32("x", x.T) is not x.T and _as_f32("x", x.T).flags.c_contiguous
    assert _as_f32("x", x.astype(np.float64)).dtype == np.float32


def test_unbatched_input_and_a_1d_mask():
    row = next(r for r in manifest(FIXTURES / "block") if r["name"] == "unbatched_seq17")
    state, x, want, _ = split_fixture(FIXTURES / "block" / "unbatched_seq17.safetensors")
    stack = resformer.TransformerStack.from_state_dict(state, row["heads"], **options(row, "cpu"))
    assert x.ndim == 2
    y = stack(x)
    assert y.shape == x.shape and np.abs(y - want).max() <= ATOL
    mask = np.zeros(x.shape[0], dtype=bool)
    assert np.array_equal(stack(x, mask), y)


def test_bad_shapes_and_dtypes_are_shape_errors():
    row, (state, x, want, mask) = encoder_fixture()
    stack = resformer.TransformerStack.from_state_dict(state, row["heads"], **options(row, "cpu"))
    bad = [
        (x[:, :, :-1], "embed 40"),
        (x[0, 0], "expected"),
        (x[None], "expected"),
        (x.astype(np.complex64), "complex"),
        (np.array([["a"]]), "dtype"),
    ]
    for v, needle in bad:
        with pytest.raises(resformer.ShapeError, match=needle):
            stack(v)
    with pytest.raises(resformer.ShapeError, match=r"key_padding_mask has shape \(11, 3\)"):
        stack(x, mask.T)
    with pytest.raises(ValueError):  # ShapeError is a ValueError
        stack(x, mask[:, :-1])
    with pytest.raises(resformer.ShapeError, match="heads 7 do not divide embed 40"):
        resformer.TransformerStack.from_state_dict(state, 7, device="cpu")
    with pytest.raises(resformer.ShapeError, match="activation 'silu'"):
        resformer.TransformerStack.from_state_dict(state, 5, activation="silu", device="cpu")
    with pytest.raises(resformer.ModelLoadError, match="is the prefix right"):
        resformer.TransformerStack.from_state_dict(state, 5, prefix="encoder.", device="cpu")
    with pytest.raises(TypeError, match="from_state_dict"):
        resformer.TransformerStack()


def test_is_causal_at_call_time_matches_the_causal_fixture(device):
    row = next(r for r in manifest(FIXTURES / "encoder") if r["name"] == "post_gelu_causal")
    state, x, want, _ = split_fixture(FIXTURES / "encoder" / "post_gelu_causal.safetensors")
    stack = resformer.TransformerStack.from_state_dict(state, row["heads"], activation="gelu", device=device)
    assert np.abs(stack(x, is_causal=True) - want).max() <= ATOL
    assert np.abs(stack(x) - want).max() > 1e-2, "without the causal mask the output differs"
