#!/usr/bin/env python3
"""Writes the PyTorch parity fixtures for the block and the stack.

For each config below: an nn.Sequential of TransformerBlock (the spec's
module, plus its options) with random weights, LayerNorm gamma/beta drawn away
from 1 and 0, a random input, and the output computed in float64. One
safetensors file per config holds the weights (state_dict names, prefix ""),
`input`, `output` and, when used, `key_padding_mask` (1.0 = padded key).
tests/fixtures/block/manifest.txt lists each config's options.

    python3 -m pip install torch safetensors numpy
    python3 scripts/make_fixtures.py            # rewrites tests/fixtures/block/
"""
import os
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "block")


class TransformerBlock(nn.Module):
    """The spec's block; pre_norm / gelu / eps / batch_first are the engine's options."""

    def __init__(self, embed_dim, num_heads, ff_dim, dropout=0.1, pre_norm=False, gelu=False, eps=1e-5, batch_first=False):
        super().__init__()
        self.attn = nn.MultiheadAttention(embed_dim, num_heads, dropout=dropout, batch_first=batch_first)
        self.ffn = nn.Sequential(nn.Linear(embed_dim, ff_dim), nn.GELU() if gelu else nn.ReLU(), nn.Linear(ff_dim, embed_dim))
        self.norm1 = nn.LayerNorm(embed_dim, eps=eps)
        self.norm2 = nn.LayerNorm(embed_dim, eps=eps)
        self.dropout = nn.Dropout(dropout)
        self.pre_norm = pre_norm
        self.key_padding_mask = None
        self.attn_mask = None

    def _sa(self, x):
        return self.attn(x, x, x, key_padding_mask=self.key_padding_mask, attn_mask=self.attn_mask, need_weights=False)[0]

    def forward(self, x):
        if self.pre_norm:
            x = x + self.dropout(self._sa(self.norm1(x)))
            return x + self.dropout(self.ffn(self.norm2(x)))
        x = self.norm1(x + self.dropout(self._sa(x)))
        return self.norm2(x + self.dropout(self.ffn(x)))


# name, seq, batch, embed, heads, ff, layers, options
CONFIGS = [
    ("tiny_seq1", 1, 1, 24, 1, 48, 1, {}),
    ("odd_17x3_h6", 17, 3, 36, 6, 72, 2, {}),
    ("seq37_e96_h4", 37, 1, 96, 4, 160, 1, {}),
    ("unbatched_seq17", 17, 0, 30, 3, 50, 1, {}),
    ("pre_norm", 17, 3, 48, 3, 96, 2, {"pre_norm": True}),
    ("gelu_eps1e-6", 37, 3, 40, 5, 80, 3, {"gelu": True, "eps": 1e-6}),
    ("causal", 17, 3, 32, 2, 64, 2, {"causal": True}),
    ("key_padding", 37, 3, 48, 4, 96, 2, {"padded": True}),
    ("batch_first", 17, 3, 60, 6, 120, 2, {"batch_first": True, "padded": True}),
    ("everything", 17, 3, 24, 2, 56, 3, {"pre_norm": True, "gelu": True, "causal": True, "padded": True, "batch_first": True}),
]


def build(seed, seq, batch, embed, heads, ff, layers, opt):
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    blocks = nn.Sequential(*[
        TransformerBlock(embed, heads, ff, pre_norm=opt.get("pre_norm", False), gelu=opt.get("gelu", False),
                         eps=opt.get("eps", 1e-5), batch_first=opt.get("batch_first", False))
        for _ in range(layers)
    ])
    with torch.no_grad():
        for name, p in blocks.named_parameters():
            if name.startswith(tuple(f"{i}.norm" for i in range(layers))) or ".norm" in name:
                if name.endswith("weight"):
                    p.copy_(torch.rand(p.shape, generator=g) + 0.5)       # gamma in [0.5, 1.5)
                else:
                    p.copy_(torch.rand(p.shape, generator=g) - 0.5)       # beta in [-0.5, 0.5)
            elif name.endswith("bias"):
                p.copy_((torch.rand(p.shape, generator=g) - 0.5) * 0.2)  # PyTorch zeroes these; make them count
    blocks.eval()
    unbatched = batch == 0
    b = 1 if unbatched else batch
    if opt.get("batch_first"):
        x = torch.randn(b, seq, embed, generator=g)
    else:
        x = torch.randn(seq, b, embed, generator=g)
    if unbatched:
        x = x[:, 0, :]
    kpm = None
    if opt.get("padded"):
        kpm = torch.zeros(b, seq, dtype=torch.bool)
        for i in range(b):
            kpm[i, seq - (i * seq) // (b + 1):] = True                     # batch i keeps its first keys
    causal = torch.ones(seq, seq, dtype=torch.bool).triu(1) if opt.get("causal") else None
    return blocks, x, kpm, causal


def run(blocks, x, kpm, causal):
    blocks = blocks.double()
    for blk in blocks:
        blk.key_padding_mask = kpm
        blk.attn_mask = causal
    with torch.no_grad():
        y = blocks(x.double())
    return y.float()


def main():
    os.makedirs(OUT, exist_ok=True)
    lines = ["# name seq batch(0 = unbatched) embed heads ff layers pre_norm gelu causal padded batch_first eps"]
    for seed, (name, seq, batch, embed, heads, ff, layers, opt) in enumerate(CONFIGS):
        blocks, x, kpm, causal = build(1000 + seed, seq, batch, embed, heads, ff, layers, opt)
        tensors = {k: v.detach().float().contiguous() for k, v in blocks.state_dict().items()}
        y = run(blocks, x, kpm, causal)
        assert torch.isfinite(y).all(), name
        tensors["input"] = x.contiguous()
        tensors["output"] = y.contiguous()
        if kpm is not None:
            tensors["key_padding_mask"] = kpm.float()
        save_file(tensors, os.path.join(OUT, f"{name}.safetensors"))
        flags = [int(bool(opt.get(k))) for k in ("pre_norm", "gelu", "causal", "padded", "batch_first")]
        lines.append(" ".join(map(str, [name, seq, batch, embed, heads, ff, layers, *flags, opt.get("eps", 1e-5)])))
    with open(os.path.join(OUT, "manifest.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    total = sum(os.path.getsize(os.path.join(OUT, n)) for n in os.listdir(OUT))
    print(f"wrote {len(CONFIGS)} fixtures, {total / 1e6:.2f} MB, to {os.path.normpath(OUT)}")


if __name__ == "__main__":
    main()
