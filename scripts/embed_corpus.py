#!/usr/bin/env python3
"""Embed a corpus with Ray Data: JSONL or Parquet in (a text column), Parquet out (every
input column plus the vectors), on a laptop (a local Ray) or a cluster (RAY_ADDRESS).

    pip install ./crates/resformer-py "ray[data]"
    python3 scripts/embed_corpus.py corpus.jsonl vectors/ --model models/all-MiniLM-L6-v2 [--actors 2]
    RAY_ADDRESS=auto python3 scripts/embed_corpus.py s3://bucket/corpus/ s3://bucket/vectors/ --model DIR --gpus-per-actor 1

OUTPUT is a directory of Parquet files (Ray writes one per block). The script prints the
cluster, progress (Ray Data's own bars) and, at the end, rows and rows/s.
"""
import argparse
import os
import sys
import time

import ray
import ray.data

import resformer.ray


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("input", help="a .jsonl/.json or .parquet file or directory")
    ap.add_argument("output", help="a directory for the Parquet files")
    ap.add_argument("--model", required=True, help="a sentence-transformers BERT directory")
    ap.add_argument("--column", default="text")
    ap.add_argument("--output-column", default="embedding")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--actors", type=int, default=None, help="actors (default: as many as the cluster holds)")
    ap.add_argument("--cpus-per-actor", type=float, default=1)
    ap.add_argument("--gpus-per-actor", type=float, default=0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--normalize", action="store_true")
    a = ap.parse_args()
    if not os.path.exists(os.path.join(a.model, "config.json")):
        sys.exit(f"error: {a.model}: not a model directory (no config.json)")
    address = os.environ.get("RAY_ADDRESS")
    # a local Ray without its dashboard: on a small machine its processes take a share of the cores
    ray.init(address=address, log_to_driver=False, **({} if address else {"include_dashboard": False}))
    res = ray.cluster_resources()
    print(f"ray: {len(ray.nodes())} node(s), {res.get('CPU', 0):.0f} CPUs, {res.get('GPU', 0):.0f} GPUs", flush=True)
    lower = a.input.rstrip("/").lower()
    # reading and writing reserve no CPU: actors that hold every CPU of a node (the usual
    # setup: one actor per node, all its cores) must not starve the I/O tasks that feed them
    io = {"num_cpus": 0}
    parquet = lower.endswith(".parquet") or os.path.isdir(a.input)
    read = ray.data.read_parquet if parquet else ray.data.read_json
    ds = read(a.input, ray_remote_args=io)
    out = resformer.ray.embed_dataset(
        ds, a.model, column=a.column, output_column=a.output_column, batch_size=a.batch_size,
        num_actors=a.actors, num_gpus=a.gpus_per_actor, num_cpus=None if a.gpus_per_actor else a.cpus_per_actor,
        device=a.device, normalize_embeddings=a.normalize,
    )
    t = time.perf_counter()
    out.write_parquet(a.output, ray_remote_args=io)
    took = time.perf_counter() - t
    rows = ray.data.read_parquet(a.output).count()
    print(f"embedded {rows} rows in {took:.1f} s: {rows / took:.1f} rows/s -> {a.output}", flush=True)


if __name__ == "__main__":
    main()
