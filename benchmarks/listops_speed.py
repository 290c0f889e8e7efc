"""ListOps generator speed: accepted examples per second, with their statistics.

Rows (train split, LRA grammar and bounds; every example is a kept tree, with its
tokens, label and depth):

- `batch`: `generate_listops_batch` over consecutive groups of `--group` examples,
  in this process (one CPU core).
- `single`: `generate_listops` one example at a time (the path of the on-the-fly
  source).
- `write_listops`: the whole cache pipeline (all three splits, 96/2/2, memory maps,
  duplicate check), with `--workers` processes; wall clock, start-up included.
- `lra method`: the method of the LRA script (`lra_benchmarks/data/listops.py`),
  restated here: recursive sampling with Python's `random`, the parenthesized
  string, recursive evaluation with NumPy's median and sum, a set against
  duplicates. Its rate is the baseline of the speed-up column.

CPU-time rates are steadier than wall-clock ones on a shared machine; the speed-up
column divides a row's CPU-time rate (wall clock for `write_listops`, whose work is
in other processes) by the LRA method's CPU-time rate.

    python benchmarks/listops_speed.py
    python benchmarks/listops_speed.py --count 4000 --workers 2
"""

import argparse
import random
import tempfile
import time

import numpy as np

from seqkit._cli_common import positive_int
from seqkit.data import generate_listops, generate_listops_batch, write_listops


def _count(text: str) -> int:
    """--count: at least 25, so that the cache row's write_listops (96% of the examples
    in train) gives every split an example."""
    n = positive_int(text)
    if n < 25:
        raise argparse.ArgumentTypeError(f"expected at least 25 examples, got {n}")
    return n


def _lra_method(count: int, seed: int) -> tuple[int, int]:
    """`count` kept trees by the LRA script's method; returns (kept, drawn)."""
    rng = random.Random(seed)
    ops = ("[MIN", "[MAX", "[MED", "[SM")

    def draw(depth):
        # (tree, tokens): a digit, or [operator, arguments...]
        if depth < 10 and rng.random() <= 0.25:
            k = rng.randint(2, 10)
            args, n = [], 2
            for _ in range(k):
                a, m = draw(depth + 1)
                args.append(a)
                n += m
            return [rng.choice(ops), *args], n
        return rng.choice(range(10)), 1

    def text(t):
        if isinstance(t, int):
            return str(t)
        s = t[0]
        for a in t[1:]:
            s = f"( {s} {text(a)} )"
        return f"( {s} ] )"

    def value(t):
        if isinstance(t, int):
            return t
        args = [value(a) for a in t[1:]]
        op = t[0]
        if op == "[MIN":
            return min(args)
        if op == "[MAX":
            return max(args)
        if op == "[MED":
            return int(np.median(args))
        return int(np.sum(args) % 10)

    seen, rows, drawn = set(), [], 0
    while len(rows) < count:
        t, n = draw(1)
        drawn += 1
        if 500 < n < 2000:
            s = text(t)
            if s not in seen:
                seen.add(s)
                rows.append((s, value(t)))
    return len(rows), drawn


def _timed(f):
    t0, c0 = time.perf_counter(), time.process_time()
    out = f()
    return out, time.perf_counter() - t0, time.process_time() - c0


def _stats(examples) -> str:
    lengths = np.array([e.tokens.size for e in examples])
    labels = np.bincount([e.label for e in examples], minlength=10) / len(examples)
    depths = np.bincount([e.depth for e in examples], minlength=11)[1:] / len(examples)
    return "\n".join(
        [
            f"  length: mean {lengths.mean():.1f}, min {lengths.min()}, max {lengths.max()}",
            "  label:  " + " ".join(f"{d}:{p:.3f}" for d, p in enumerate(labels)),
            "  depth:  " + " ".join(f"{d + 1}:{p:.3f}" for d, p in enumerate(depths) if p > 0),
        ]
    )


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--count",
        type=_count,
        default=4096,
        help="examples per timed row (at least 25: the cache row's splits)",
    )
    parser.add_argument(
        "--group", type=positive_int, default=512, help="examples per generate_listops_batch call"
    )
    parser.add_argument("--workers", type=positive_int, default=2, help="processes for the write_listops row")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-baseline", action="store_true", help="do not time the LRA method")
    args = parser.parse_args()
    n = args.count

    generate_listops_batch(args.seed, "train", range(10**6, 10**6 + 8))  # warm-up
    print(f"ListOps generation, LRA grammar (500 < length < 2000), {n} train examples per row")
    print(f"{'method':<28} {'examples':>8} {'wall ex/s':>10} {'cpu ex/s':>9} {'speed-up':>9}")
    rows = []

    def batch():
        out = []
        for s in range(0, n, args.group):
            out += generate_listops_batch(args.seed, "train", range(s, min(n, s + args.group)))
        return out

    examples, wall, cpu = _timed(batch)
    rows.append((f"batch (group {args.group})", n, wall, cpu))
    m = max(1, n // 8)
    _, wall, cpu = _timed(lambda: [generate_listops(args.seed, "train", i) for i in range(m)])
    rows.append(("single", m, wall, cpu))
    with tempfile.TemporaryDirectory() as out:
        size = max(3, round(n / 0.96))
        _, wall, cpu = _timed(lambda: write_listops(out, size, seed=args.seed, workers=args.workers))
        rows.append((f"write_listops ({args.workers} workers)", size, wall, None))
    base = None
    if not args.skip_baseline:
        b = max(1, n // 8)
        (_, drawn), wall, cpu = _timed(lambda: _lra_method(b, args.seed))
        base = b / cpu
        rows.append(("lra method", b, wall, cpu))
    for name, k, wall, cpu in rows:
        cpu_rate = f"{k / cpu:>9.1f}" if cpu else f"{'-':>9}"
        ref = k / (cpu if cpu else wall)
        speed = f"{ref / base:>8.1f}x" if base else f"{'-':>9}"
        print(f"{name:<28} {k:>8} {k / wall:>10.1f} {cpu_rate} {speed}")
    print(f"statistics of the {n} batch examples:")
    print(_stats(examples))


if __name__ == "__main__":
    main()
