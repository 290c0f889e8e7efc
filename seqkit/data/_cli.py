"""The `seqkit data` subcommand: write dataset caches."""

from __future__ import annotations

import argparse
import os
import sys
import time

from ._pathfinder import CONTOUR_LENGTHS, METADATA, PATHFINDER_PRESETS, write_pathfinder
from ._registry import DATASETS


class _Progress:
    """A single updating line on stderr: images written/total and images/s."""

    def __init__(self, label: str, stream=None):
        self.label = label
        self.stream = sys.stderr if stream is None else stream
        self.t0 = time.perf_counter()

    def line(self, done: int, total: int) -> str:
        elapsed = time.perf_counter() - self.t0
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (total - done) / rate if rate > 0 else float("inf")
        return f"{self.label}: {done}/{total} images, {rate:.1f} images/s, ETA {eta:.0f} s"

    def __call__(self, done: int, total: int):
        self.stream.write("\r" + self.line(done, total))
        self.stream.flush()


def data_command(args: argparse.Namespace) -> int:
    """Run `seqkit data ...` from parsed arguments; returns the exit code."""
    if args.data_command == "list":
        for name, text in DATASETS.items():
            print(f"{name:<14} {text}")
        return 0
    # data pathfinder
    if args.size < 1:
        print(f"seqkit data: error: expected --size >= 1, got {args.size}", file=sys.stderr)
        return 2
    if args.workers < 1:
        print(f"seqkit data: error: expected --workers >= 1, got {args.workers}", file=sys.stderr)
        return 2
    if os.path.exists(os.path.join(args.out, METADATA)) and not args.overwrite:
        print(
            f"seqkit data: error: {args.out} already holds a cache; "
            "pass --overwrite or choose another --out",
            file=sys.stderr,
        )
        return 2
    progress = _Progress(f"{args.preset} (contour length {args.contour_length})")
    meta = write_pathfinder(
        args.out,
        args.preset,
        args.size,
        seed=args.seed,
        contour_length=args.contour_length,
        workers=args.workers,
        progress=progress,
    )
    elapsed = time.perf_counter() - progress.t0
    sys.stderr.write("\n")
    counts = ", ".join(f"{k} {v}" for k, v in meta["splits"].items())
    print(
        f"wrote {args.size} {args.preset} images ({counts}) to {args.out} "
        f"in {elapsed:.1f} s ({args.size / max(elapsed, 1e-9):.1f} images/s)"
    )
    return 0


def add_data_parser(subparsers) -> argparse.ArgumentParser:
    """Register the `data` subcommand on an argparse subparsers object."""
    data = subparsers.add_parser(
        "data", help="write dataset caches (Pathfinder/Path-X) or list the datasets"
    )
    sub = data.add_subparsers(dest="data_command", required=True)
    sub.add_parser("list", help="list the datasets with one-line descriptions")
    pf = sub.add_parser(
        "pathfinder",
        help="generate a Pathfinder/Path-X split (80/10/10) into a memory-mapped cache",
    )
    pf.add_argument("--preset", choices=sorted(PATHFINDER_PRESETS), default="pathfinder32")
    pf.add_argument("--size", type=int, required=True, help="total number of images")
    pf.add_argument("--out", required=True, help="output directory")
    pf.add_argument(
        "--contour-length", type=int, choices=CONTOUR_LENGTHS, default=14,
        help="paddles per target snake (difficulty; LRA uses 14)",
    )
    pf.add_argument("--workers", type=int, default=1, help="generator processes")
    pf.add_argument("--seed", type=int, default=0, help="data seed")
    pf.add_argument("--overwrite", action="store_true", help="replace an existing cache")
    data.set_defaults(func=data_command)
    return data


def cli_data(argv: list[str] | None = None) -> int:
    """`seqkit data ...` as a standalone entry point: `cli_data(["pathfinder", ...])`."""
    parser = argparse.ArgumentParser(prog="seqkit")
    add_data_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["data", *(sys.argv[1:] if argv is None else argv)])
    return args.func(args)
