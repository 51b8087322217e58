#!/usr/bin/env python3
"""Writes the all-MiniLM-L6-v2 parity fixture: token ids and sentence embeddings
from sentence-transformers, for sentences of mixed length and content.

    bash scripts/fetch-minilm.sh
    python3 -m pip install sentence-transformers safetensors
    python3 scripts/make_minilm_fixtures.py     # rewrites tests/fixtures/minilm/

Outputs: sentences.txt (one sentence per line) and expected.safetensors with
`embeddings` (n, 384, f32, L2-normalised) and `ids_<i>` (the token ids of
sentence i, stored as f32: exact for ids below 2^24).
"""
import os
import torch
from safetensors.torch import save_file
from sentence_transformers import SentenceTransformer

ROOT = os.path.join(os.path.dirname(__file__), "..")
MODEL = os.path.join(ROOT, "models", "all-MiniLM-L6-v2")
OUT = os.path.join(ROOT, "tests", "fixtures", "minilm")

LONG = " ".join(
    "The quick brown fox jumps over the lazy dog while the engine computes attention over every token,"
    .split() * 14
)  # ~200 words: well past the 256-token truncation

SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "Hello",
    "GPUs multiply matrices; CPUs mostly wait for memory!",
    "Résumé: naïve café owners in Zürich déjà vu — ünïcödé everywhere.",
    "東京は日本の首都です。",
    "What is the capital of France? Paris, of course... or is it?",
    "(1 + 2) * 3 = 9, and 2^10 = 1024 #math @home",
    "The transformer architecture relies on self-attention, residual connections and layer normalisation "
    "to model long-range dependencies in sequences of tokens, which is why it became the foundation of "
    "modern language models, speech recognisers, protein folding systems and many other applications "
    "that process structured data at scale across research and industry.",
    "   leading and trailing spaces   ",
    "x",
    LONG,
]


def main():
    os.makedirs(OUT, exist_ok=True)
    model = SentenceTransformer(MODEL, device="cpu")
    assert model.max_seq_length == 256, model.max_seq_length
    tok = model.tokenizer
    tensors = {}
    for i, s in enumerate(SENTENCES):
        ids = tok(s, truncation=True, max_length=model.max_seq_length)["input_ids"]
        tensors[f"ids_{i}"] = torch.tensor(ids, dtype=torch.float32)
    with torch.no_grad():
        emb = model.encode(SENTENCES, convert_to_tensor=True, normalize_embeddings=True, batch_size=4)
    tensors["embeddings"] = emb.float().contiguous()
    save_file(tensors, os.path.join(OUT, "expected.safetensors"))
    with open(os.path.join(OUT, "sentences.txt"), "w", encoding="utf-8") as f:
        for s in SENTENCES:
            assert "\n" not in s
            f.write(s + "\n")
    lens = [int(tensors[f"ids_{i}"].numel()) for i in range(len(SENTENCES))]
    sim = float(emb[0] @ emb[1])
    print(f"{len(SENTENCES)} sentences, token counts {lens}; cos(s0, s1) = {sim:.4f}")


if __name__ == "__main__":
    main()
