#!/usr/bin/env python3
"""PyTorch timings of the cases of `resformer bench`, in its JSON row format,
for `resformer bench --compare FILE`.

    python3 scripts/torch_baseline.py --sizes large --json torch.json
    resformer bench --sizes large --compare torch.json
    python3 scripts/torch_baseline.py --minilm 512   # sentences/s of a BERT of MiniLM's config


CUDA when present, else CPU; f32 with TF32 off. The cases come from
benches/cases.json, the table `resformer bench` reads; rows are matched by
(kernel, shape).
"""
import argparse
import json
import os
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

def load_cases():
    """benches/cases.json, the table `resformer bench` and the criterion benches read too, as
    (kernel, params) per size: matmul (m, n, k), attention (batch, heads, seq, head_dim),
    layernorm (rows, cols), residual_add (len,), stack (layers, embed, heads, ff, seq, batch)."""
    fields = {
        "matmul": ("m", "n", "k"),
        "attention": ("batch", "heads", "seq", "head_dim"),
        "layernorm": ("rows", "cols"),
        "residual_add": ("len",),
        "stack": ("layers", "embed", "heads", "ff", "seq", "batch"),
    }
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "benches", "cases.json")
    with open(path) as fh:
        table = json.load(fh)
    return {size: [(c["case"], tuple(c[f] for f in fields[c["case"]])) for c in rows]
            for size, rows in table.items() if not size.startswith("_")}


CASES = load_cases()


class TransformerBlock(nn.Module):
    """The spec's block (scripts/make_fixtures.py), post-norm, ReLU."""

    def __init__(self, embed_dim, num_heads, ff_dim):
        super().__init__()
        self.attn = nn.MultiheadAttention(embed_dim, num_heads, dropout=0.1)
        self.ffn = nn.Sequential(nn.Linear(embed_dim, ff_dim), nn.ReLU(), nn.Linear(ff_dim, embed_dim))
        self.norm1 = nn.LayerNorm(embed_dim)
        self.norm2 = nn.LayerNorm(embed_dim)

    def forward(self, x):
        x = self.norm1(x + self.attn(x, x, x, need_weights=False)[0])
        return self.norm2(x + self.ffn(x))


def timed(fn, dev, runs):
    """Median ms of `runs` calls after a warm-up; CUDA events on a GPU."""
    fn()
    times = []
    for _ in range(runs):
        if dev.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def minilm_speed(batch, seq, runs, dev):
    """sentences/s of a BERT with all-MiniLM-L6-v2's configuration (vocab 30522, hidden 384,
    12 heads, ff 1536, 6 post-LN GELU layers, LayerNorm eps 1e-12), random weights: embedding
    lookup, embedding LayerNorm, the encoder, mean pooling and L2 normalisation, as
    `resformer embed --speed` times them (no tokenisation)."""
    hidden, vocab = 384, 30522
    word, pos = nn.Embedding(vocab, hidden).to(dev), nn.Embedding(512, hidden).to(dev)
    norm = nn.LayerNorm(hidden, eps=1e-12).to(dev)
    layer = nn.TransformerEncoderLayer(hidden, 12, 1536, dropout=0.0, activation="gelu", layer_norm_eps=1e-12,
                                       batch_first=True)
    encoder = nn.TransformerEncoder(layer, 6, enable_nested_tensor=False).to(dev).eval()
    ids = torch.randint(0, vocab, (batch, seq), device=dev)
    positions = torch.arange(seq, device=dev)

    def embed():
        h = encoder(norm(word(ids) + pos(positions)))
        return F.normalize(h.mean(dim=1), dim=1)

    with torch.no_grad():
        ms = timed(embed, dev, runs)
    return ms


# the text `resformer embed --speed` rotates through (crates/resformer-cli/src/embed.rs)
SPEED_TEXT = (
    "Attention lets every token look at every other token of the sentence, weigh how much each one matters, "
    "and mix their values into a new representation; stacking such layers with residual connections, layer "
    "normalisation and feed-forward networks gives the encoder that turns a sentence into a single vector whose "
    "direction captures its meaning, so that similar sentences point the same way")


def st_speed(model_dir, batch, runs, dev):
    """ms of sentence-transformers' encode() of `batch` sentences built as `resformer embed --speed`
    builds them (the text rotated by i words, as many words as fit in 128 tokens)."""
    from sentence_transformers import SentenceTransformer
    model = SentenceTransformer(model_dir, device=dev.type)
    words = SPEED_TEXT.split()
    sentences = []
    for i in range(batch):
        s = ""
        for w in (words[(i + j) % len(words)] for j in range(10 * len(words))):
            longer = w if not s else f"{s} {w}"
            if len(model.tokenizer(longer)["input_ids"]) > 128:
                break
            s = longer
        sentences.append(s)
    encode = lambda: model.encode(sentences, batch_size=batch, convert_to_numpy=True)
    with torch.no_grad():
        return timed(encode, dev, runs)


def shape_of(kernel, p):
    if kernel == "matmul":
        return "{}x{}x{}".format(*p)
    if kernel == "attention":
        return "b{}h{}s{}d{}".format(*p)
    if kernel == "layernorm":
        return "{}x{}".format(*p)
    if kernel == "residual_add":
        return str(p[0])
    return "L{}e{}h{}f{}s{}b{}".format(*p)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="small", choices=CASES)
    ap.add_argument("--json", default="torch.json")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--minilm", type=int, metavar="BATCH", help="time a MiniLM-config BERT on BATCH x 128 tokens instead")
    ap.add_argument("--half", action="store_true", help="the stack cases only, in float16 (CUDA): PyTorch's f16 encoder")
    ap.add_argument("--st-model", metavar="DIR",
                    help="with --minilm: time sentence-transformers' encode() of this model on ~128-token sentences")
    args = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    adapter = torch.cuda.get_device_name(0) if dev.type == "cuda" else "cpu"
    if args.minilm and args.st_model:
        ms = st_speed(args.st_model, args.minilm, max(3, args.runs // 2), dev)
        print(f"sentence-transformers on {dev.type} ({adapter}, {torch.get_num_threads()} threads): {args.st_model}, "
              f"batch {args.minilm} of ~128-token sentences: {ms:.1f} ms (median, tokenisation included): "
              f"{args.minilm / ms * 1e3:.1f} sentences/s")
        return
    if args.minilm:
        ms = minilm_speed(args.minilm, 128, max(3, args.runs // 2), dev)
        print(f"torch {torch.__version__} {dev.type} on {adapter}: MiniLM-config BERT, batch {args.minilm} x 128 "
              f"tokens: {ms:.1f} ms (median, f32, TF32 off): {args.minilm / ms * 1e3:.1f} sentences/s")
        return
    rows = []
    cases = [c for c in CASES[args.sizes] if not args.half or c[0] == "stack"]
    dtype = torch.float16 if args.half else torch.float32
    with torch.no_grad():
        for kernel, p in cases:
            r = lambda *s: torch.rand(*s, device=dev) * 2 - 1
            row = {"kernel": kernel, "shape": shape_of(kernel, p), "adapter": adapter,
                   "backend": f"torch {torch.__version__} {dev.type}", "gpu_clock": "cuda events" if dev.type == "cuda" else "wall",
                   "cpu_ref_ms": None, "peak_pct": None}
            if kernel == "matmul":
                m, n, k = p
                x, w, b = r(m, k), r(n, k), r(n)
                ms = timed(lambda: F.linear(x, w, b), dev, args.runs)
                row.update(m=m, n=n, k=k, gflops=2 * m * n * k / ms / 1e6)
            elif kernel == "attention":
                bt, h, s, d = p
                q, k_, v = r(bt, h, s, d), r(bt, h, s, d), r(bt, h, s, d)
                ms = timed(lambda: F.scaled_dot_product_attention(q, k_, v), dev, args.runs)
                row.update(gflops=4 * bt * h * s * s * d / ms / 1e6)
            elif kernel == "layernorm":
                rows_, cols = p
                x, res, g, b = r(rows_, cols), r(rows_, cols), r(cols), r(cols)
                ms = timed(lambda: F.layer_norm(x + res, (cols,), g, b, 1e-5), dev, args.runs)
                row.update(gbps=12 * rows_ * cols / ms / 1e6)
            elif kernel == "residual_add":
                (n,) = p
                a, b = r(n), r(n)
                ms = timed(lambda: a + b, dev, args.runs)
                row.update(gbps=12 * n / ms / 1e6)
            else:
                layers, e, h, f, s, bt = p
                if layers == 1:
                    model = TransformerBlock(e, h, f).to(dev).eval()
                    row["kernel"] = "block"
                else:
                    layer = nn.TransformerEncoderLayer(e, h, f, dropout=0.1, activation="relu")
                    model = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False).to(dev).eval()
                model = model.to(dtype)
                x = r(s, bt, e).to(dtype)
                ms = timed(lambda: model(x), dev, args.runs)
                t = s * bt
                flops = layers * (2 * t * (4 * e * e + 2 * e * f) + 4 * bt * s * s * e)
                row.update(gflops=flops / ms / 1e6)
            row["gpu_ms"] = ms
            rows.append(row)
            print(f"{row['kernel']:<13} {row['shape']:<28} {ms:10.3f} ms", flush=True)
    with open(args.json, "w") as fh:
        json.dump(rows, fh, indent=2)
    print(f"adapter: {adapter}; wrote {len(rows)} rows to {args.json}")


if __name__ == "__main__":
    main()
