"""The `seqkit data` subcommand: list the datasets, write Pathfinder/Path-X caches, check files.

Part of the command line (`seqkit.cli`), built on `seqkit.data`'s public names (and
its rule for caches of another dataset, `seqkit.data._files.other_cache`).
"""

import argparse
import os
import sys
import time

from seqkit._paths import expand_path

# The file `write_pathfinder` writes last: a directory holding it holds a complete cache.
_CACHE_METADATA = "metadata.json"


class _Progress:
    """Progress on stderr: images (or another `unit`) written/total, rate and ETA.

    On a terminal one line is redrawn in place (`\\r`); otherwise (a log, a pipe)
    whole lines are written: the first, then at most one every `every` seconds, and
    the last. The terminal test is `seqkit train`'s (`seqkit.train.Progress`).
    """

    def __init__(self, label: str, stream=None, unit: str = "images", every: float = 10.0):
        self.label = label
        self.unit = unit
        self.stream = sys.stderr if stream is None else stream
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.every = every
        self.t0 = time.perf_counter()
        self.written = None  # when the last whole line was written (not on a terminal)
        self.started = False

    def line(self, done: int, total: int) -> str:
        elapsed = time.perf_counter() - self.t0
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (total - done) / rate if rate > 0 else float("inf")
        u = self.unit
        return f"{self.label}: {done}/{total} {u}, {rate:.1f} {u}/s, ETA {eta:.0f} s"

    def __call__(self, done: int, total: int):
        self.started = True
        if self.tty:
            self.stream.write("\r" + self.line(done, total))
        else:
            now = time.perf_counter()
            if done < total and self.written is not None and now - self.written < self.every:
                return
            self.written = now
            self.stream.write(self.line(done, total) + "\n")
        self.stream.flush()

    def end(self):
        """End the redrawn line (if one was written), so what follows gets its own line."""
        if self.started and self.tty:
            self.stream.write("\n")
        self.started = False


def _error(message: str) -> int:
    print(f"seqkit data: error: {message}", file=sys.stderr)
    return 2


def _bad_level(contour_length: int | None) -> str | None:
    """The flag's own name for a Pathfinder level the generator does not have."""
    from seqkit.data._pathfinder import CONTOUR_LENGTHS

    if contour_length is None or contour_length in CONTOUR_LENGTHS:
        return None
    return f"expected --contour-length in {CONTOUR_LENGTHS}, got {contour_length}"


def data_command(args: argparse.Namespace) -> int:
    """Run `seqkit data ...` from parsed arguments; returns the exit code."""
    from seqkit.data import DATASETS, write_pathfinder
    from seqkit.data._files import other_cache

    if args.data_command == "list":
        for name, text in DATASETS.items():
            print(f"{name:<14} {text}")
        return 0
    if args.data_command == "listops":
        return _listops_command(args)
    if args.data_command == "check":
        return _check_command(args)
    # data pathfinder; write_pathfinder checks --size (every split gets an image) itself.
    if args.workers < 1:
        return _error(f"expected --workers >= 1, got {args.workers}")
    if reason := _bad_level(args.contour_length):
        return _error(reason)
    out = expand_path(args.out)
    if reason := other_cache(out, _CACHE_METADATA, "pathfinder", args.preset):
        return _error(reason)  # --overwrite or not: the caches share file names
    if os.path.exists(os.path.join(out, _CACHE_METADATA)) and not args.overwrite:
        return _error(f"{out} already holds a cache; pass --overwrite or choose another --out")
    progress = _Progress(f"{args.preset} (contour length {args.contour_length}, {args.style})")
    try:
        meta = write_pathfinder(
            out,
            args.preset,
            args.size,
            seed=args.seed,
            contour_length=args.contour_length,
            style=args.style,
            workers=args.workers,
            progress=progress,
            overwrite=args.overwrite,
        )
    except ValueError as e:  # e.g. a contour length the generator does not have, --size too small
        progress.end()
        return _error(str(e).splitlines()[0])
    except OSError as e:  # --out (or a parent) not writable or a file, the disk full: nothing is left
        progress.end()
        if e.filename is None:  # write_pathfinder's own message names the path
            return _error(str(e).splitlines()[0])
        where = f" ({e.filename})" if os.fspath(e.filename) != out else ""
        return _error(f"cannot write the cache to {out}: {e.strerror or e}{where}")
    elapsed = time.perf_counter() - progress.t0
    progress.end()
    counts = ", ".join(f"{k} {v}" for k, v in meta["splits"].items())
    print(
        f"wrote {args.size} {args.preset} images ({counts}) to {out} "
        f"in {elapsed:.1f} s ({args.size / max(elapsed, 1e-9):.1f} images/s)"
    )
    return 0


def _listops_command(args: argparse.Namespace) -> int:
    """`seqkit data listops`: write (or keep) a ListOps cache."""
    from seqkit.data import write_listops

    if args.workers < 1:
        return _error(f"expected --workers >= 1, got {args.workers}")
    out = expand_path(args.out)
    existed = os.path.exists(os.path.join(out, _CACHE_METADATA))
    progress = _Progress("listops", unit="examples")
    try:
        # An existing cache with the same settings is kept; other settings are refused
        # (the message shows both) unless --overwrite.
        meta = write_listops(
            out, args.size, seed=args.seed, workers=args.workers, overwrite=args.overwrite, progress=progress
        )
    except ValueError as e:
        progress.end()
        return _error(str(e).splitlines()[0])
    except OSError as e:
        progress.end()
        return _error(f"cannot write the cache to {out}: {e.strerror or e}")
    elapsed = time.perf_counter() - progress.t0
    progress.end()
    counts = ", ".join(f"{k} {v}" for k, v in meta["splits"].items())
    if existed and not progress.started and not args.overwrite:
        print(f"{out} already holds this ListOps cache ({counts}, seed {meta['seed']}); nothing to do")
        return 0
    print(
        f"wrote {args.size} ListOps examples ({counts}) to {out} "
        f"in {elapsed:.1f} s ({args.size / max(elapsed, 1e-9):.1f} examples/s)"
    )
    return 0


def _check_command(args: argparse.Namespace) -> int:
    """`seqkit data check NAME`: one line per file (its status, path and note), then a summary.

    The status is `ok`, `missing`, or for a file that is there but not read `bad`
    (truncated, corrupt, of another size), `mismatch` (a cache of other settings)
    or `unused` (another alternative is read). Exit code 0 when the dataset can
    be read (every file there, or one of the alternatives), 1 when something is
    missing or unusable, 2 for a usage error (unknown
    NAME, an option that does not apply, no data directory for a dataset that
    needs files).
    """
    from seqkit.data import CHECKERS, DataNotFoundError, check_dataset

    takes_level = args.name in CHECKERS and "contour_length" in CHECKERS[args.name].options
    if takes_level and (reason := _bad_level(args.contour_length)):
        return _error(reason)
    try:
        report = check_dataset(args.name, args.data_dir, contour_length=args.contour_length, style=args.style)
    except (ValueError, DataNotFoundError) as e:
        return _error(str(e).splitlines()[0])
    for f in report.files:
        print(f"{f.status:<8} {f.path}  {f.note}")
    print(report.summary)
    return 0 if report.complete else 1


def add_data_parser(subparsers) -> argparse.ArgumentParser:
    """Register the `data` subcommand on an argparse subparsers object."""
    from seqkit.data import PATHFINDER_PRESETS

    data = subparsers.add_parser("data", help="write dataset caches (Pathfinder/Path-X) or list the datasets")
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
        "--contour-length",
        type=int,
        default=14,
        help="paddles per target snake: 6, 9 or 14 (difficulty; LRA uses 14)",
    )
    pf.add_argument(
        "--style",
        choices=("lra", "continuous"),
        default="lra",
        help="lra: dashed snakes as LRA generated them (default); continuous: unbroken snakes (easier)",
    )
    pf.add_argument("--workers", type=int, default=1, help="generator processes")
    pf.add_argument("--seed", type=int, default=0, help="data seed")
    pf.add_argument("--overwrite", action="store_true", help="replace an existing cache")
    lo = sub.add_parser(
        "listops",
        help="generate LRA ListOps (96k/2k/2k by default) into a memory-mapped cache",
    )
    lo.add_argument("--size", type=int, default=100_000, help="total number of examples (split 96/2/2)")
    lo.add_argument("--out", required=True, help="output directory")
    lo.add_argument("--workers", type=int, default=1, help="generator processes")
    lo.add_argument("--seed", type=int, default=0, help="data seed")
    lo.add_argument(
        "--overwrite", action="store_true", help="replace an existing cache (other settings are refused)"
    )
    ck = sub.add_parser(
        "check",
        help="say which files a dataset reads, which are there and where the others go "
        "(exit 0: ready, 1: something missing or unusable)",
    )
    ck.add_argument("name", help="dataset name (see `seqkit data list`)")
    ck.add_argument(
        "--data-dir",
        help="data directory (default: $SEQKIT_DATA for datasets read from files; generated ones need none)",
    )
    ck.add_argument("--contour-length", type=int, help="Pathfinder level to check: 6, 9 or 14 (default 14)")
    ck.add_argument(
        "--style", choices=("lra", "continuous"), help="Pathfinder style the cache must have (default lra)"
    )
    data.set_defaults(func=data_command)
    return data
