#!/usr/bin/env python3
"""The CPU backend against the engines a machine without a GPU would otherwise run, in one
session: all-MiniLM-L6-v2 through `resformer embed --speed --device cpu`, sentence-transformers
(torch CPU) and ONNX Runtime on a `torch.onnx` export of the same model, all with the same
thread count and tokenisation and pooling included; then `resformer bench --device cpu --sizes
medium` against torch CPU (scripts/torch_baseline.py) for the kernel and stack cases, in turns.

    python3 scripts/cpu_baseline.py                      # batch 32 of ~128 tokens, batch 1, mixed 8-128
    python3 scripts/cpu_baseline.py --cases batch32 --threads 2 --runs 7 --rounds 5
    python3 scripts/cpu_baseline.py --skip-bench
    python3 scripts/cpu_baseline.py --bench-only --rounds 5

A measuring tool for people with torch, sentence-transformers, onnx and onnxruntime installed
(pip install torch sentence-transformers onnx onnxscript onnxruntime), not part of CI. The
binary is target/release/resformer (cargo build --release); the model comes from
scripts/fetch-minilm.sh. ONNX Runtime runs the export after its transformers optimizer's BERT
fusions (--no-ort-fusion: the plain export). Each line names the engine, the batch and the
median over --rounds measurements taken in turn, each the median of --runs timed batches after
a warm-up; the last lines give the ratios.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# (name, batch, shortest sentence in tokens): the three MiniLM targets
CASES = {"batch32": (32, 128), "batch1": (1, 128), "mixed32": (32, 8)}


def speed_sentences(tokenizer, batch, min_tokens):
    """The sentences `resformer embed --speed [--min-tokens N]` builds: sentence i is the text
    rotated by i words, as many words as fit in its length (128 tokens, or spread evenly from
    min_tokens to 128), [CLS] and [SEP] included."""
    from torch_baseline import SPEED_TEXT
    words = SPEED_TEXT.split()
    out = []
    for i in range(batch):
        most = min_tokens + (128 - min_tokens) * i // (batch - 1) if batch > 1 and min_tokens < 128 else 128
        s = ""
        for j in range(10 * len(words)):
            w = words[(i + j) % len(words)]
            longer = w if not s else f"{s} {w}"
            if len(tokenizer(longer)["input_ids"]) > most:
                break
            s = longer
        out.append(s)
    return out


def median_ms(fn, runs):
    fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def resformer_speed(binary, model, batch, min_tokens, runs, threads):
    cmd = [binary, "embed", "--model", model, "--speed", "--device", "cpu", "--batch", str(batch),
           "--repeats", str(runs), "--json"]
    if min_tokens < 128:
        cmd += ["--min-tokens", str(min_tokens)]
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    row = json.loads(out)[0]
    return row["batch_ms"], row["backend"]


def export_onnx(st_model, path):
    """The BERT under sentence-transformers' pipeline, exported with dynamic batch and length."""
    import torch

    class Hidden(torch.nn.Module):
        """input ids and mask in, the last hidden state out: keywords, so the BERT's own signature
        (which moves between transformers versions) does not matter."""

        def __init__(self, bert):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask):
            return self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    bert = Hidden(st_model[0].auto_model.eval()).eval()
    ids = torch.ones((2, 16), dtype=torch.long)
    mask = torch.ones((2, 16), dtype=torch.long)
    dyn = {0: "batch", 1: "seq"}
    torch.onnx.export(bert, (ids, mask), path, input_names=["input_ids", "attention_mask"],
                      output_names=["last_hidden_state"], dynamic_axes={"input_ids": dyn, "attention_mask": dyn,
                                                                        "last_hidden_state": dyn},
                      opset_version=17, dynamo=False)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "all-MiniLM-L6-v2"))
    ap.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "resformer"))
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--runs", type=int, default=5, help="timed batches per measurement (their median)")
    ap.add_argument("--rounds", type=int, default=3, help="measurements per engine, taken in turn (their median)")
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=CASES)
    ap.add_argument("--skip-bench", action="store_true", help="only the MiniLM cases, not `bench --device cpu --sizes medium`")
    ap.add_argument("--no-ort-fusion", action="store_true",
                    help="time ORT on the plain export, without its transformers optimizer's BERT fusions")
    ap.add_argument("--bench-only", action="store_true", help="only `bench --device cpu --sizes medium` against torch")
    args = ap.parse_args()
    if args.bench_only:
        return bench_in_turns(args)

    import numpy as np
    import onnxruntime as ort
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(args.threads)
    st = SentenceTransformer(args.model, device="cpu")
    tok = st.tokenizer
    onnx_path = os.path.join(tempfile.mkdtemp(prefix="cpu-baseline-"), "minilm.onnx")
    export_onnx(st, onnx_path)
    fused = "plain export"
    if not args.no_ort_fusion:
        # ORT's BERT fusions (attention, GELU, layernorm, skip-layernorm) run only through its
        # transformers optimizer, not through ORT_ENABLE_ALL alone: the fastest ORT has to offer
        from onnxruntime.transformers.optimizer import optimize_model
        opt = optimize_model(onnx_path, model_type="bert", num_heads=st[0].auto_model.config.num_attention_heads,
                             hidden_size=st[0].auto_model.config.hidden_size)
        onnx_path = onnx_path.replace(".onnx", "-fused.onnx")
        opt.save_model_to_file(onnx_path)
        fused = "fused by onnxruntime.transformers.optimizer: " + ", ".join(
            f"{k} {v}" for k, v in opt.get_fused_operator_statistics().items() if v)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = args.threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"])

    def ort_embed(sentences):
        enc = tok(sentences, padding=True, truncation=True, max_length=256, return_tensors="np")
        h = sess.run(None, {"input_ids": enc["input_ids"].astype(np.int64),
                            "attention_mask": enc["attention_mask"].astype(np.int64)})[0]
        m = enc["attention_mask"][..., None].astype(np.float32)
        v = (h * m).sum(1) / np.maximum(m.sum(1), 1e-9)
        return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)

    print(f"{args.threads} threads; torch {torch.__version__}, onnxruntime {ort.__version__}, "
          f"median of {args.runs} after a warm-up, tokenisation and pooling included\nONNX Runtime's model: {fused}")
    summary = []
    for name in args.cases:
        batch, min_tokens = CASES[name]
        sentences = speed_sentences(tok, batch, min_tokens)
        lens = [len(tok(s)["input_ids"]) for s in sentences]
        # check the export against sentence-transformers before timing it
        gap = float(np.abs(ort_embed(sentences) - st.encode(sentences, batch_size=batch, normalize_embeddings=True)).max())
        # the engines in turn, --rounds times: a noisy minute on a shared machine then costs
        # each of them alike, and the median over rounds is what is reported
        ms = {"resformer": [], "sentence-transformers": [], "onnxruntime": []}
        backend = "CPU backend"
        for _ in range(args.rounds):
            # a second's pause first: torch's and ORT's pools spin a while after their last call,
            # and would take the cores from the next process
            time.sleep(1.0)
            t, backend = resformer_speed(args.binary, args.model, batch, min_tokens, args.runs, args.threads)
            ms["resformer"].append(t)
            with torch.no_grad():
                ms["sentence-transformers"].append(median_ms(lambda: st.encode(sentences, batch_size=batch), args.runs))
            ms["onnxruntime"].append(median_ms(lambda: ort_embed(sentences), args.runs))
        print(f"\n{name}: batch {batch} of {min(lens)}-{max(lens)} tokens ({sum(lens)} real, "
              f"{batch * max(lens)} padded); ORT export within {gap:.1e} of sentence-transformers")
        for engine, times in ms.items():
            label = f"resformer, {backend}" if engine == "resformer" else engine
            t = statistics.median(times)
            spread = "  (rounds: " + ", ".join(f"{x:.1f}" for x in times) + " ms)" if len(times) > 1 else ""
            print(f"  {label:58} {t:8.1f} ms  {batch / t * 1e3:7.1f} sentences/s{spread}")
        med = {k: statistics.median(v) for k, v in ms.items()}
        summary.append((name, med["onnxruntime"] / med["resformer"], med["sentence-transformers"] / med["resformer"]))
    print("\nresformer's speed over the others' (above 1: resformer faster):")
    for name, over_ort, over_st in summary:
        print(f"  {name:8} {over_ort:5.2f}x ONNX Runtime, {over_st:5.2f}x sentence-transformers")
    if args.skip_bench:
        return
    bench_in_turns(args)


def bench_in_turns(args):
    """`resformer bench --device cpu --sizes medium` (the CPU backend alone, no GPU opened) and
    scripts/torch_baseline.py in turns, --rounds times each; per case the median of each's
    rounds (each round the median of 10 calls after a warm-up) and the ratio."""
    tmp = tempfile.mkdtemp(prefix="cpu-baseline-")
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), RAYON_NUM_THREADS=str(args.threads))
    ours, torch_rows, adapter = {}, {}, ""
    for r in range(args.rounds):
        torch_json, ours_json = os.path.join(tmp, f"torch{r}.json"), os.path.join(tmp, f"ours{r}.json")
        subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "torch_baseline.py"), "--sizes", "medium",
                        "--json", torch_json], check=True, env=env, stdout=subprocess.DEVNULL)
        subprocess.run([args.binary, "bench", "--device", "cpu", "--sizes", "medium", "--cpu-budget", "1e9",
                        "--json", ours_json], check=True, env=env, stdout=subprocess.DEVNULL)
        for row in json.load(open(torch_json)):
            torch_rows.setdefault((row["kernel"], row["shape"]), []).append(row["gpu_ms"])
        for row in json.load(open(ours_json)):
            ours.setdefault((row["kernel"], row["shape"]), []).append(row["cpu_ms"])
            adapter = row["adapter"]
    print(f"\n`resformer bench --device cpu --sizes medium` ({adapter}) against torch CPU, {args.threads} threads, "
          f"in turns, median of {args.rounds} rounds:")
    print(f"  {'case':34} {'resformer ms':>12} {'torch ms':>9} {'ours/torch':>10}")
    for (kernel, shape), times in ours.items():
        a, b = statistics.median(times), statistics.median(torch_rows[(kernel, shape)])
        print(f"  {kernel + ' ' + shape:34} {a:12.3f} {b:9.3f} {a / b:10.2f}")

if __name__ == "__main__":
    main()
