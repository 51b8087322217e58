#!/usr/bin/env python3
"""Load test for resformer-server on loopback: N concurrent clients send M requests of
mixed lengths to /v1/embeddings, and every answer is checked against the vector the same
text gets when sent alone. Reports throughput, latency percentiles and status counts, and
stops by itself (M requests, or --max-seconds).

    target/release/resformer-server --model models/all-MiniLM-L6-v2 --port 8080 --device cpu &
    python3 scripts/load_test.py http://127.0.0.1:8080 --clients 32 --requests 320

Standard library only. A refused request (429) counts as such and is not retried.
"""
import argparse
import base64
import collections
import http.client
import json
import random
import struct
import sys
import threading
import time
import urllib.parse

WORDS = ("the engine embeds every sentence of the corpus with attention over its tokens and a pooled vector "
         "whose direction carries the meaning of the text so that similar texts point the same way").split()


def texts(n, seed):
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.choice([3, 8, 20, 40, 90]))) for _ in range(n)]


def post(conn, body):
    t = time.perf_counter()
    conn.request("POST", "/v1/embeddings", body=json.dumps(body), headers={"content-type": "application/json"})
    r = conn.getresponse()
    data = r.read()
    return r.status, data, (time.perf_counter() - t) * 1e3


def vectors(data):
    out = []
    for d in json.loads(data)["data"]:
        raw = base64.b64decode(d["embedding"])
        out.append(struct.unpack(f"<{len(raw) // 4}f", raw))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("url", help="http://127.0.0.1:PORT (loopback only)")
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--requests", type=int, default=320)
    ap.add_argument("--inputs-per-request", type=int, default=4)
    ap.add_argument("--distinct", type=int, default=64, help="distinct texts (each checked against its solo vector)")
    ap.add_argument("--max-seconds", type=float, default=300)
    ap.add_argument("--tolerance", type=float, default=1e-6)
    ap.add_argument("--corpus", metavar="FILE.jsonl", help="take the texts from here (the `text` field) instead")
    a = ap.parse_args()
    u = urllib.parse.urlparse(a.url)
    if u.hostname not in ("127.0.0.1", "localhost", "::1"):
        sys.exit("load_test.py targets loopback only")
    pool = texts(a.distinct, 1)
    if a.corpus:
        with open(a.corpus) as f:
            pool = list(dict.fromkeys(json.loads(line)["text"] for line in f))[: a.distinct]
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
    solo = {}
    for t in pool:  # each text alone: the reference every batched answer must equal
        st, data, _ = post(conn, {"input": t, "encoding_format": "base64"})
        assert st == 200, (st, data[:200])
        solo[t] = vectors(data)[0]
    lock = threading.Lock()
    statuses, latencies, wrong = collections.Counter(), [], []
    next_req = iter(range(a.requests))
    deadline = time.monotonic() + a.max_seconds

    def client(i):
        c = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
        rng = random.Random(100 + i)
        while time.monotonic() < deadline:
            with lock:
                n = next(next_req, None)
            if n is None:
                return
            batch = [rng.choice(pool) for _ in range(a.inputs_per_request)]
            try:
                st, data, ms = post(c, {"input": batch, "encoding_format": "base64"})
            except OSError as e:
                with lock:
                    statuses[f"connection error: {type(e).__name__}"] += 1
                c = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
                continue
            bad = 0
            if st == 200:
                for t, v in zip(batch, vectors(data)):
                    if max(abs(x - y) for x, y in zip(v, solo[t])) > a.tolerance:
                        bad += 1
            with lock:
                statuses[st] += 1
                latencies.append(ms)
                if bad:
                    wrong.append(n)

    t = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(a.clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    took = time.perf_counter() - t
    lat = sorted(latencies)
    pct = lambda p: lat[min(len(lat) - 1, int(p / 100 * len(lat)))] if lat else float("nan")
    ok = statuses.get(200, 0)
    print(f"{a.clients} clients, {sum(statuses.values())} requests of {a.inputs_per_request} inputs in {took:.1f} s: "
          f"{ok / took:.1f} requests/s, {ok * a.inputs_per_request / took:.1f} inputs/s")
    print(f"latency ms: p50 {pct(50):.0f}, p95 {pct(95):.0f}, p99 {pct(99):.0f}")
    print(f"statuses: {dict(statuses)}; answers differing from the solo vector: {len(wrong)}")
    sys.exit(1 if wrong or set(statuses) - {200, 429} else 0)


if __name__ == "__main__":
    main()
