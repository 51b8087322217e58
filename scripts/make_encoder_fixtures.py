#!/usr/bin/env python3
"""Writes nn.TransformerEncoder parity fixtures, made by PyTorch's own module.

Each config below builds `nn.TransformerEncoder(nn.TransformerEncoderLayer(...), num_layers,
norm=...)` with seeded random weights (LayerNorm gamma/beta drawn away from 1 and 0, biases
nonzero), runs it in float64 in eval mode with the fast path off, and writes one safetensors
file: the module's own state_dict (`layers.{i}.self_attn.in_proj_weight`, ...,
`layers.{i}.linear1.*`, `norm.*` when there is a final norm), `input`, `output` and, when used,
`key_padding_mask` as the bool tensor PyTorch users hold. tests/fixtures/encoder/manifest.txt
lists each config's options in the same format as the block fixtures.

    python3 -m pip install torch safetensors numpy
    python3 scripts/make_encoder_fixtures.py    # rewrites tests/fixtures/encoder/
"""
import os
import torch
import torch.nn as nn
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "encoder")

# name, seq, batch (0 = unbatched), d_model, nhead, dim_feedforward, layers, options
CONFIGS = [
    ("post_relu_seq_first_norm", 13, 3, 32, 4, 64, 2, {"final_norm": True}),
    ("pre_gelu_batch_first_padded_norm", 11, 3, 40, 5, 72, 2,
     {"norm_first": True, "gelu": True, "batch_first": True, "padded": True, "final_norm": True}),
    ("post_gelu_causal", 9, 2, 24, 3, 48, 2, {"gelu": True, "causal": True}),
    ("pre_relu_padded_causal_eps1e-6", 15, 3, 36, 6, 60, 3,
     {"norm_first": True, "padded": True, "causal": True, "batch_first": True, "eps": 1e-6}),
    ("post_relu_padded_seq_first", 17, 4, 48, 4, 96, 1, {"padded": True}),
    ("unbatched_pre_norm", 7, 0, 16, 2, 40, 2, {"norm_first": True, "final_norm": True}),
]


def build(seed, seq, batch, d, heads, ff, layers, opt):
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    eps = opt.get("eps", 1e-5)
    layer = nn.TransformerEncoderLayer(
        d, heads, ff, dropout=0.1, activation="gelu" if opt.get("gelu") else "relu",
        layer_norm_eps=eps, batch_first=opt.get("batch_first", False), norm_first=opt.get("norm_first", False))
    norm = nn.LayerNorm(d, eps=eps) if opt.get("final_norm") else None
    enc = nn.TransformerEncoder(layer, layers, norm=norm, enable_nested_tensor=False)
    with torch.no_grad():
        for name, p in enc.named_parameters():
            if "norm" in name and name.endswith("weight"):
                p.copy_(torch.rand(p.shape, generator=g) + 0.5)      # gamma in [0.5, 1.5)
            elif "norm" in name:
                p.copy_(torch.rand(p.shape, generator=g) - 0.5)      # beta in [-0.5, 0.5)
            elif name.endswith("bias"):
                p.copy_((torch.rand(p.shape, generator=g) - 0.5) * 0.2)  # PyTorch zeroes these
    enc.eval()
    b = max(batch, 1)
    x = torch.randn(b, seq, d, generator=g) if opt.get("batch_first") else torch.randn(seq, b, d, generator=g)
    if batch == 0:
        x = x[0] if opt.get("batch_first") else x[:, 0, :]
    kpm = None
    if opt.get("padded"):
        kpm = torch.zeros(b, seq, dtype=torch.bool)
        for i in range(b):
            kpm[i, seq - (i * seq) // (b + 1):] = True                    # element i keeps its first keys
    return enc, x, kpm


def run(enc, x, kpm, causal):
    enc = enc.double()
    seq = x.shape[1] if enc.layers[0].self_attn.batch_first and x.dim() == 3 else x.shape[0]
    # bool like the padding mask (True = hidden): key j > query i
    mask = torch.ones(seq, seq, dtype=torch.bool).triu(1) if causal else None
    torch.backends.mha.set_fastpath_enabled(False)
    with torch.no_grad():
        return enc(x.double(), mask=mask, src_key_padding_mask=kpm, is_causal=causal).float()


def main():
    os.makedirs(OUT, exist_ok=True)
    lines = ["# name seq batch(0 = unbatched) embed heads ff layers pre_norm gelu causal padded batch_first eps"]
    for seed, (name, seq, batch, d, heads, ff, layers, opt) in enumerate(CONFIGS):
        enc, x, kpm = build(2000 + seed, seq, batch, d, heads, ff, layers, opt)
        tensors = {k: v.detach().float().contiguous() for k, v in enc.state_dict().items()}
        y = run(enc, x, kpm, bool(opt.get("causal")))
        assert torch.isfinite(y).all(), name
        assert ("norm.weight" in tensors) == bool(opt.get("final_norm")), name
        tensors["input"] = x.float().contiguous()
        tensors["output"] = y.contiguous()
        if kpm is not None:
            tensors["key_padding_mask"] = kpm.contiguous()
        save_file(tensors, os.path.join(OUT, f"{name}.safetensors"))
        flags = [int(bool(opt.get(k))) for k in ("norm_first", "gelu", "causal", "padded", "batch_first")]
        lines.append(" ".join(map(str, [name, seq, batch, d, heads, ff, layers, *flags, opt.get("eps", 1e-5)])))
    with open(os.path.join(OUT, "manifest.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    total = sum(os.path.getsize(os.path.join(OUT, n)) for n in os.listdir(OUT))
    print(f"wrote {len(CONFIGS)} fixtures, {total / 1e6:.2f} MB, to {os.path.normpath(OUT)} (torch {torch.__version__})")


if __name__ == "__main__":
    main()
