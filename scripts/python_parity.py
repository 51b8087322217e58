#!/usr/bin/env python3
"""The Python package against live PyTorch and sentence-transformers (not run in CI: it
needs torch): MiniLM's sentence embeddings, a live nn.TransformerEncoder (pre-norm, gelu,
batch_first, key padding, final norm) and the engine's own block stack, on the CPU backend and
on the GPU path.

    bash scripts/test-python.sh && target/py-venv/bin/pip install torch sentence-transformers
    target/py-venv/bin/python scripts/python_parity.py [--devices cpu,gpu]
"""
import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

import resformer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from make_fixtures import TransformerBlock  # noqa: E402  the engine's block, as the fixtures define it

SENTENCES = ["A man is eating food.", "A man is eating a piece of bread.", "Hello", "Résumé: naïve café owners.",
             "What is the capital of France? " * 12]


def live_encoder():
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(64, 4, 160, dropout=0.1, activation="gelu", batch_first=True, norm_first=True)
    enc = nn.TransformerEncoder(layer, 3, norm=nn.LayerNorm(64), enable_nested_tensor=False).eval()
    x = torch.randn(4, 23, 64)
    kpm = torch.zeros(4, 23, dtype=torch.bool)
    kpm[1, 17:] = True
    kpm[3, 5:] = True
    return enc, x, kpm


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", default="cpu,gpu")
    a = ap.parse_args()
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(ROOT / "models" / "all-MiniLM-L6-v2"), device="cpu")
    want = st.encode(SENTENCES, convert_to_numpy=True)
    torch.backends.mha.set_fastpath_enabled(False)
    enc, x, kpm = live_encoder()
    with torch.no_grad():
        enc_want = enc.double()(x.double(), src_key_padding_mask=kpm).float().numpy()
    enc.float()
    torch.manual_seed(1)
    blocks = nn.Sequential(*[TransformerBlock(48, 6, 96) for _ in range(2)]).eval()
    xb = torch.randn(19, 3, 48)
    with torch.no_grad():
        blocks_want = blocks.double()(xb.double()).float().numpy()
    blocks.float()
    for device in a.devices.split(","):
        m = resformer.SentenceEncoder(ROOT / "models" / "all-MiniLM-L6-v2", device=device)
        got = m.encode(SENTENCES)
        cos = (got * want).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1))
        print(f"[{device}] {m.device}")
        print(f"  MiniLM, {len(SENTENCES)} sentences: min cosine {cos.min():.7f}, max abs {np.abs(got - want).max():.2e}")
        s = resformer.TransformerStack.from_module(enc, device=device)
        y = s(x, key_padding_mask=kpm)
        print(f"  nn.TransformerEncoder (pre-norm, gelu, batch_first, key padding, final norm), {s}: "
              f"max abs {np.abs(y - enc_want).max():.2e}")
        b = resformer.TransformerStack.from_state_dict(blocks.state_dict(), 6, device=device)
        yb = b(xb)
        print(f"  the engine's block stack (2 blocks, post-norm, relu): max abs {np.abs(yb - blocks_want).max():.2e}")
        assert cos.min() >= 0.9999 and np.abs(y - enc_want).max() <= 1e-4 and np.abs(yb - blocks_want).max() <= 1e-4


if __name__ == "__main__":
    main()
