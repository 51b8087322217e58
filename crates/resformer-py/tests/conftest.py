"""Shared fixtures: the repository's committed fixtures and the devices to test on.

The GPU path runs on whatever adapter the machine has (lavapipe in CI). With
RESFORMER_REQUIRE_GPU=1 (scripts/test.sh sets it) a missing adapter fails instead of
skipping, as in the Rust tests; with RESFORMER_REQUIRE_MODEL=1 a missing MiniLM or digits
file fails too."""

import os
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

import resformer

REPO = Path(__file__).resolve().parents[3]
FIXTURES = REPO / "tests" / "fixtures"
MINILM = REPO / "models" / "all-MiniLM-L6-v2"
DIGITS = REPO / "data" / "digits" / "digits.csv"


def _gpu_present() -> bool:
    return any(d["backend"] != "Gl" for d in resformer.devices())


def device_params():
    params = ["cpu"]
    if _gpu_present():
        params.append("gpu")
    elif os.environ.get("RESFORMER_REQUIRE_GPU") == "1":
        params.append(pytest.param("gpu", marks=pytest.mark.xfail(strict=True, reason="RESFORMER_REQUIRE_GPU=1 and no adapter")))
    else:
        params.append(pytest.param("gpu", marks=pytest.mark.skip(reason="no GPU or software adapter")))
    return params


def require(path: Path, how: str):
    if path.exists():
        return
    if os.environ.get("RESFORMER_REQUIRE_MODEL") == "1":
        pytest.fail(f"{path} is missing and RESFORMER_REQUIRE_MODEL=1: {how}")
    pytest.skip(f"{path} is missing: {how}")


@pytest.fixture(params=device_params())
def device(request):
    return request.param


def manifest(dir: Path):
    """The block / encoder fixtures' manifest rows as dicts."""
    rows = []
    for line in (dir / "manifest.txt").read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        f = line.split()
        rows.append(dict(
            name=f[0], seq=int(f[1]), batch=int(f[2]), embed=int(f[3]), heads=int(f[4]), ff=int(f[5]),
            layers=int(f[6]), norm_first=f[7] == "1", gelu=f[8] == "1", causal=f[9] == "1", padded=f[10] == "1",
            batch_first=f[11] == "1", eps=float(f[12]),
        ))
    return rows


def split_fixture(path: Path):
    """(state_dict, input, output, key_padding_mask or None) of one fixture file."""
    t = load_file(str(path))
    x, y = t.pop("input"), t.pop("output")
    mask = t.pop("key_padding_mask", None)
    return t, x, y, mask


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))
