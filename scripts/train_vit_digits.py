#!/usr/bin/env python3
"""Trains the small Vision Transformer that `resformer classify` runs, on the UCI handwritten
digits (scripts/fetch-digits.sh), and writes everything the engine and its tests read.

    bash scripts/fetch-digits.sh
    python3 -m pip install torch safetensors scikit-learn
    python3 scripts/train_vit_digits.py              # a few minutes on 2 CPU cores

The model: the 8x8 image (pixels / 16) cut into 2x2 patches (16 tokens of 4 values, patch
(r, c) = pixels [2r, 2c], [2r, 2c+1], [2r+1, 2c], [2r+1, 2c+1]), a linear patch embedding, a
learned class token and position embeddings (17 tokens), N of the project's residual blocks
(post-norm, ReLU: the block of scripts/make_fixtures.py, batch-first), then LayerNorm and a
linear head over the class token. Training: AdamW, one-cycle schedule, random one-pixel shifts,
seeded. The split: scikit-learn's train_test_split, stratified, 20% test, random_state 0.

Writes assets/vit-digits/ (model.safetensors with PyTorch's names, config.json, split.json with
the test indices, README.md with this command and the test accuracy) and
tests/fixtures/vit_digits/expected.safetensors (the test split's logits computed in float64,
the predictions, and scikit-learn's classification_report and confusion matrix of them).
"""
import argparse
import json
import os
import time

import numpy as np
import torch
import torch.nn as nn
from safetensors.torch import save_file
from sklearn.metrics import classification_report, confusion_matrix
from sklearn.model_selection import train_test_split

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


class TransformerBlock(nn.Module):
    """The project's block (post-norm, ReLU), batch-first."""

    def __init__(self, embed_dim, num_heads, ff_dim, dropout):
        super().__init__()
        self.attn = nn.MultiheadAttention(embed_dim, num_heads, dropout=dropout, batch_first=True)
        self.ffn = nn.Sequential(nn.Linear(embed_dim, ff_dim), nn.ReLU(), nn.Linear(ff_dim, embed_dim))
        self.norm1 = nn.LayerNorm(embed_dim)
        self.norm2 = nn.LayerNorm(embed_dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        x = self.norm1(x + self.dropout(self.attn(x, x, x, need_weights=False)[0]))
        return self.norm2(x + self.dropout(self.ffn(x)))


class ViT(nn.Module):
    def __init__(self, embed, heads, ff, layers, dropout=0.1, patch=2, image=8, classes=10):
        super().__init__()
        self.patch, self.grid = patch, image // patch
        tokens = self.grid * self.grid + 1
        self.patch_embed = nn.Linear(patch * patch, embed)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed))
        self.pos_embed = nn.Parameter(torch.randn(1, tokens, embed) * 0.02)
        self.blocks = nn.Sequential(*[TransformerBlock(embed, heads, ff, dropout) for _ in range(layers)])
        self.norm = nn.LayerNorm(embed)
        self.head = nn.Linear(embed, classes)

    def patches(self, img):
        """(B, 8, 8) -> (B, 16, 4), patches in row-major grid order, pixels row-major inside."""
        b, p, g = img.shape[0], self.patch, self.grid
        return img.reshape(b, g, p, g, p).permute(0, 1, 3, 2, 4).reshape(b, g * g, p * p)

    def forward(self, img):
        x = self.patch_embed(self.patches(img))
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        x = self.blocks(x)
        return self.head(self.norm(x[:, 0]))


def shift(img, gen):
    """Each image moved by one random pixel offset in -1..1 on both axes, zeros coming in."""
    padded = torch.nn.functional.pad(img, (1, 1, 1, 1))
    out = torch.empty_like(img)
    offs = torch.randint(0, 9, (img.shape[0],), generator=gen)
    for o in range(9):
        sel = offs == o
        dy, dx = divmod(o, 3)
        out[sel] = padded[sel, dy:dy + 8, dx:dx + 8]
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--embed", type=int, default=64)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--ff", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    data = np.loadtxt(os.path.join(ROOT, "data", "digits", "digits.csv"), delimiter=",")
    images, labels = data[:, :64].reshape(-1, 8, 8) / 16.0, data[:, 64].astype(np.int64)
    idx = np.arange(len(labels))
    train_idx, test_idx = train_test_split(idx, test_size=0.2, stratify=labels, random_state=0)
    test_idx = np.sort(test_idx)
    x = torch.tensor(images, dtype=torch.float32)
    y = torch.tensor(labels)

    model = ViT(args.embed, args.heads, args.ff, args.layers)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.05)
    steps = args.epochs * ((len(train_idx) + args.batch - 1) // args.batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=steps)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.05)
    started = time.time()
    for epoch in range(args.epochs):
        model.train()
        perm = torch.tensor(train_idx)[torch.randperm(len(train_idx), generator=gen)]
        for s in range(0, len(perm), args.batch):
            b = perm[s:s + args.batch]
            opt.zero_grad()
            loss = loss_fn(model(shift(x[b], gen)), y[b])
            loss.backward()
            opt.step()
            sched.step()
        if (epoch + 1) % 20 == 0 or epoch == 0:
            model.eval()
            with torch.no_grad():
                acc = (model(x[test_idx]).argmax(1) == y[test_idx]).float().mean().item()
            print(f"epoch {epoch + 1}: loss {loss.item():.4f}, test accuracy {acc:.4f} ({time.time() - started:.0f} s)",
                  flush=True)

    # the reference: the trained model in float64, eval mode, on the whole test split
    model.eval()
    with torch.no_grad():
        logits = model.double()(x[test_idx].double())
    model.float()
    pred = logits.argmax(1).numpy()
    truth = labels[test_idx]
    report = classification_report(truth, pred, output_dict=True, zero_division=0)
    cm = confusion_matrix(truth, pred, labels=list(range(10)))
    acc = float(report["accuracy"])
    print(f"test accuracy {acc:.4f} ({(pred == truth).sum()} of {len(truth)})")

    out = os.path.join(ROOT, "assets", "vit-digits")
    os.makedirs(out, exist_ok=True)
    state = {k: v.detach().float().contiguous() for k, v in model.state_dict().items()}
    save_file(state, os.path.join(out, "model.safetensors"))
    config = {"image": 8, "patch": 2, "embed": args.embed, "heads": args.heads, "ff": args.ff,
              "layers": args.layers, "classes": 10, "pixel_scale": 16.0, "pre_norm": False, "eps": 1e-5}
    json.dump(config, open(os.path.join(out, "config.json"), "w"), indent=2)
    json.dump({"test_fraction": 0.2, "stratified": True, "random_state": 0, "test_indices": test_idx.tolist()},
              open(os.path.join(out, "split.json"), "w"))
    params = sum(p.numel() for p in model.parameters())
    cmd = (f"python3 scripts/train_vit_digits.py --layers {args.layers} --embed {args.embed} --heads {args.heads} "
           f"--ff {args.ff} --epochs {args.epochs} --batch {args.batch} --lr {args.lr} --seed {args.seed}")
    with open(os.path.join(out, "README.md"), "w") as fh:
        fh.write(f"""# vit-digits

A {args.layers}-block Vision Transformer (embed {args.embed}, {args.heads} heads, ff {args.ff}, 2x2 patches,
{params:,} parameters) trained on the UCI handwritten digits that scikit-learn ships, for
`resformer classify`. Written by

    {cmd}

(torch {torch.__version__}, CPU, {time.time() - started:.0f} s). Test split: scikit-learn's
train_test_split, stratified, 20% ({len(test_idx)} images), random_state 0 (`split.json`).
Test accuracy: **{acc:.4f}** ({(pred == truth).sum()} of {len(truth)}), macro F1
{report['macro avg']['f1-score']:.4f}.
""")

    fixture = os.path.join(ROOT, "tests", "fixtures", "vit_digits")
    os.makedirs(fixture, exist_ok=True)
    classes = [str(c) for c in range(10)]
    per_class = lambda key: torch.tensor([report[c][key] for c in classes], dtype=torch.float64)
    save_file({
        "test_indices": torch.tensor(test_idx, dtype=torch.float64),
        "labels": torch.tensor(truth, dtype=torch.float64),
        "logits": logits.contiguous(),
        "predictions": torch.tensor(pred, dtype=torch.float64),
        "precision": per_class("precision"),
        "recall": per_class("recall"),
        "f1": per_class("f1-score"),
        "support": per_class("support"),
        "macro": torch.tensor([report["macro avg"][k] for k in ("precision", "recall", "f1-score")], dtype=torch.float64),
        "weighted": torch.tensor([report["weighted avg"][k] for k in ("precision", "recall", "f1-score")],
                                 dtype=torch.float64),
        "accuracy": torch.tensor([acc], dtype=torch.float64),
        "confusion": torch.tensor(cm, dtype=torch.float64),
    }, os.path.join(fixture, "expected.safetensors"))
    print(f"wrote {out}/ and {fixture}/expected.safetensors")


if __name__ == "__main__":
    main()
