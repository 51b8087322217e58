#!/usr/bin/env python3
"""Per-test wall times of `cargo nextest run` logs of an old and a new tree (same machine,
same session, `--test-threads 1`, runs interleaved): each test that is in both, the fastest of
its runs on each side, new over old, slowest ratio first.

    python3 scripts/compare_test_times.py --old old1.log old2.log --new new1.log new2.log [--min-ms 50]

Tests under --min-ms (old) are listed but not flagged: a few ms of process start is noise.
"""
import re
import sys


def load(path):
    times = {}
    for line in open(path):
        m = re.search(r"PASS \[\s*([\d.]+)s\] \(\s*\d+/\d+\) (\S+) (\S+)", line)
        if m:
            times[m.group(3)] = float(m.group(1))
    return times


def fastest(paths):
    best = {}
    for p in paths:
        for k, v in load(p).items():
            best[k] = min(v, best.get(k, v))
    return best


def main():
    args = sys.argv[1:]
    min_ms = 50.0
    if "--min-ms" in args:
        i = args.index("--min-ms")
        min_ms = float(args[i + 1])
        del args[i : i + 2]
    o, n = args.index("--old"), args.index("--new")
    old = fastest(args[o + 1 : n] if o < n else args[o + 1 :])
    new = fastest(args[n + 1 : o] if n < o else args[n + 1 :])
    both = sorted(set(old) & set(new), key=lambda k: -(new[k] / max(old[k], 1e-3)))
    print(f"{'test':<90} {'old s':>8} {'new s':>8} {'new/old':>8}")
    for k in both:
        flag = "  over 1.2" if new[k] > 1.2 * old[k] and old[k] * 1e3 >= min_ms else ""
        print(f"{k[:90]:<90} {old[k]:>8.3f} {new[k]:>8.3f} {new[k] / max(old[k], 1e-3):>8.2f}{flag}")
    print(f"only in old: {sorted(set(old) - set(new))}")
    print(f"only in new: {sorted(set(new) - set(old))}")
    print(f"sum over common tests: old {sum(old[k] for k in both):.2f} s, new {sum(new[k] for k in both):.2f} s")


if __name__ == "__main__":
    main()
