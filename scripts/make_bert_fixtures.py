#!/usr/bin/env python3
"""Writes BERT sentence-encoder fixtures of other shapes than MiniLM's: seeded random
models saved by sentence-transformers itself, with their expected outputs.

    bash scripts/fetch-minilm.sh      # its vocabulary seeds the cut one
    python3 -m pip install torch transformers sentence-transformers safetensors
    python3 scripts/make_bert_fixtures.py     # rewrites tests/fixtures/bert/
    python3 scripts/make_bert_fixtures.py h40_gelu_new_mean   # only the models named

Each tests/fixtures/bert/<name>/ is a directory `SentenceTransformer.save` wrote (config.json,
modules.json, the Pooling config, sentence_bert_config.json, model.safetensors, the
tokenizer), with a vocabulary cut to the first VOCAB entries of MiniLM's so the files stay
small, plus sentences.txt and expected.safetensors: `embeddings` (n, E) from
`encode(...)`, and per sentence i `ids_<i>` (its token ids, as f32) and `tokens_<i>` (its
token embeddings, `output_value="token_embeddings"`), all computed in float64 and stored as
float32.
"""
import json
import os
import sys

import torch
from safetensors.torch import save_file
from sentence_transformers import SentenceTransformer, models
from tokenizers import Tokenizer
from tokenizers.models import WordPiece
from tokenizers.normalizers import BertNormalizer
from tokenizers.pre_tokenizers import BertPreTokenizer
from tokenizers.processors import TemplateProcessing
from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

ROOT = os.path.join(os.path.dirname(__file__), "..")
MINILM_VOCAB = os.path.join(ROOT, "models", "all-MiniLM-L6-v2", "vocab.txt")
OUT = os.path.join(ROOT, "tests", "fixtures", "bert")
VOCAB = 3000  # [PAD] .. [MASK], single characters, and about a thousand common words

SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "Hello",
    "The quick brown fox jumps over the lazy dog.",
    "What is the capital of France? Paris, of course... or is it?",
    "Résumé: naïve café owners in Zürich.",
    "x",
    " ".join(["the model reads every word of this long sentence and more"] * 14),
]

# (name, hidden, heads, layers, ff, act, eps, positions, pooling, normalize, max_seq_length)
CONFIGS = [
    ("h64_mean_norm", 64, 4, 2, 96, "gelu", 1e-12, 128, "mean", True, 128),
    ("h48_cls_seq64", 48, 3, 3, 80, "gelu", 1e-12, 128, "cls", False, 64),
    ("h32_max_relu", 32, 2, 1, 64, "relu", 1e-6, 96, "max", True, 96),
    ("h40_gelu_new_mean", 40, 5, 2, 72, "gelu_new", 1e-12, 128, "mean", True, 128),
]


def tokenizer(vocab_path):
    with open(vocab_path, encoding="utf-8") as f:
        words = [w.rstrip("\n") for w in f][:VOCAB]
    vocab = {w: i for i, w in enumerate(words)}
    tok = Tokenizer(WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=True)
    tok.pre_tokenizer = BertPreTokenizer()
    cls, sep = vocab["[CLS]"], vocab["[SEP]"]
    tok.post_processor = TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        sep_token="[SEP]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        mask_token="[MASK]",
    )


def main():
    os.makedirs(OUT, exist_ok=True)
    only = set(sys.argv[1:])
    unknown = only - {c[0] for c in CONFIGS}
    if unknown:
        sys.exit(f"no such fixture: {sorted(unknown)}")
    for i, (name, e, heads, layers, ff, act, eps, positions, pooling, normalize, max_seq) in enumerate(CONFIGS):
        if only and name not in only:
            continue
        torch.manual_seed(1000 + i)
        cfg = BertConfig(
            vocab_size=VOCAB,
            hidden_size=e,
            num_attention_heads=heads,
            num_hidden_layers=layers,
            intermediate_size=ff,
            hidden_act=act,
            layer_norm_eps=eps,
            max_position_embeddings=positions,
            type_vocab_size=2,
        )
        bert = BertModel(cfg, add_pooling_layer=False)
        # LayerNorm gamma and beta away from 1 and 0, so a test sees them
        with torch.no_grad():
            for n, p in bert.named_parameters():
                if "LayerNorm.weight" in n:
                    p.uniform_(0.7, 1.3)
                elif "LayerNorm.bias" in n:
                    p.uniform_(-0.3, 0.3)
        tmp = os.path.join(OUT, name + "_hf")
        bert.save_pretrained(tmp, safe_serialization=True)
        tokenizer(MINILM_VOCAB).save_pretrained(tmp)
        word = models.Transformer(tmp, max_seq_length=max_seq)
        pool = models.Pooling(e, pooling_mode=pooling)
        modules = [word, pool] + ([models.Normalize()] if normalize else [])
        st = SentenceTransformer(modules=modules, device="cpu")
        d = os.path.join(OUT, name)
        st.save(d, safe_serialization=True)
        for f in os.listdir(tmp):
            os.remove(os.path.join(tmp, f))
        os.rmdir(tmp)
        # expected outputs of the saved directory, in float64
        st = SentenceTransformer(d, device="cpu").to(torch.float64)
        tensors = {}
        with torch.no_grad():
            emb = st.encode(SENTENCES, convert_to_tensor=True, batch_size=3)
            tok = st.encode(SENTENCES, output_value="token_embeddings", batch_size=3)
        tensors["embeddings"] = emb.float().contiguous()
        for j, s in enumerate(SENTENCES):
            ids = st.tokenizer(s, truncation=True, max_length=st.max_seq_length)["input_ids"]
            tensors[f"ids_{j}"] = torch.tensor(ids, dtype=torch.float32)
            tensors[f"tokens_{j}"] = tok[j][: len(ids)].float().contiguous()
            assert tok[j].shape[0] >= len(ids), (name, j)
        save_file(tensors, os.path.join(d, "expected.safetensors"))
        with open(os.path.join(d, "sentences.txt"), "w", encoding="utf-8") as f:
            for s in SENTENCES:
                f.write(s + "\n")
        for junk in ["README.md"]:
            p = os.path.join(d, junk)
            if os.path.exists(p):
                os.remove(p)
        lens = [int(tensors[f"ids_{j}"].numel()) for j in range(len(SENTENCES))]
        print(f"{name}: E {e}, {heads} heads, {layers} layers, ff {ff}, {act}, {pooling}, normalize {normalize}, "
              f"max_seq_length {max_seq}; token counts {lens}")


if __name__ == "__main__":
    main()
