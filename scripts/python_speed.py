#!/usr/bin/env python3
"""SentenceEncoder.encode against the CLI's `embed --speed` on the same ~128-token sentences,
alternating, in one session: the Python package's overhead over the engine.

    bash scripts/test-python.sh                         # or: pip install ./crates/resformer-py
    target/py-venv/bin/python scripts/python_speed.py [--device cpu] [--batch 32] [--rounds 3]
    target/py-venv/bin/python scripts/python_speed.py --write-corpus corpus.jsonl --rows 1000   # for embed_corpus.py

The sentences are built as `embed --speed` builds them (its TEXT, rotated by i words, as
many words as fit in 128 tokens), so both time the same padded (32, 128) batch.
"""
import argparse
import json
import re
import statistics
import subprocess
import time
from pathlib import Path

import resformer

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "all-MiniLM-L6-v2"


def cli_text():
    src = (ROOT / "crates" / "resformer-cli" / "src" / "embed.rs").read_text()
    body = re.search(r'const TEXT: &str = "(.*?)";', src, re.S).group(1)
    return " ".join(re.sub(r"\\\n\s*", "", body).split())


def sentences(enc, batch):
    words = cli_text().split()
    out = []
    for i in range(batch):
        s = ""
        j = i % len(words)
        while True:
            longer = words[j % len(words)] if not s else f"{s} {words[j % len(words)]}"
            if len(enc.tokenize(longer)) > 128:
                break
            s, j = longer, j + 1
        out.append(s)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--write-corpus", metavar="FILE.jsonl", help="only write N rows of these sentences (for embed_corpus.py)")
    ap.add_argument("--rows", type=int, default=1000)
    a = ap.parse_args()
    enc = resformer.SentenceEncoder(MODEL, device=a.device)
    if a.write_corpus:
        sents = sentences(enc, 64)
        with open(a.write_corpus, "w") as f:
            for i in range(a.rows):
                f.write(json.dumps({"id": i, "text": sents[i % len(sents)]}) + "\n")
        print(f"wrote {a.rows} rows of 127-128 tokens to {a.write_corpus}")
        return
    sents = sentences(enc, a.batch)
    lens = [len(enc.tokenize(s)) for s in sents]
    print(f"{enc.device}: batch {a.batch}, {min(lens)}-{max(lens)} tokens, {a.repeats} repeats x {a.rounds} rounds")
    enc.encode(sents, batch_size=a.batch)  # warm-up of the same shape
    binary = ROOT / "target" / "release" / "resformer"
    py, cli = [], []
    for r in range(a.rounds):
        times = []
        for _ in range(a.repeats):
            t = time.perf_counter()
            enc.encode(sents, batch_size=a.batch)
            times.append((time.perf_counter() - t) * 1e3)
        py.append(statistics.median(times))
        out = subprocess.run(
            [str(binary), "embed", "--model", str(MODEL), "--speed", "--device", a.device, "--batch", str(a.batch),
             "--repeats", str(a.repeats), "--json"], check=True, capture_output=True, text=True).stdout
        cli.append(json.loads(out)[0]["batch_ms"])
        print(f"round {r + 1}: encode {py[-1]:.1f} ms, embed --speed {cli[-1]:.1f} ms")
    p, c = statistics.median(py), statistics.median(cli)
    print(f"median: encode {p:.1f} ms ({a.batch / p * 1e3:.1f} sentences/s), embed --speed {c:.1f} ms "
          f"({a.batch / c * 1e3:.1f} sentences/s); encode / embed --speed = {p / c:.3f}")


if __name__ == "__main__":
    main()
