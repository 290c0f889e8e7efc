"""Pathfinder/Path-X generator speed: images per second for every preset.

Each preset generates `count` images of the train split in this process (one CPU
core); the table reports wall-clock and CPU-time rates (CPU time is steadier on a
shared machine). With `--cache-workers N` it also times `write_pathfinder` with N
worker processes on pathfinder32.

    python benchmarks/pathfinder_speed.py
    python benchmarks/pathfinder_speed.py --contour-length 6 --scale 0.5
    python benchmarks/pathfinder_speed.py --cache-workers 2
"""

import argparse
import tempfile
import time

from seqkit.data import generate_pathfinder, pathfinder_config, write_pathfinder

# Images per preset at --scale 1: a few seconds each on one core.
COUNTS = {"pathfinder32": 400, "pathfinder64": 200, "pathx": 100, "pathfinder256": 40}


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--contour-length", type=int, default=14, choices=(6, 9, 14))
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the image counts")
    parser.add_argument("--cache-workers", type=int, default=0)
    args = parser.parse_args()

    print(f"Pathfinder generator, contour length {args.contour_length}, one process")
    print(f"{'preset':<14} {'size':>5} {'images':>7} {'wall img/s':>11} {'cpu img/s':>10} {'positive':>9}")
    for preset, count in COUNTS.items():
        cfg = pathfinder_config(preset, args.contour_length)
        n = max(1, round(count * args.scale))
        generate_pathfinder(cfg, 0, "train", 10**6)  # warm-up
        t0, c0 = time.perf_counter(), time.process_time()
        labels = [generate_pathfinder(cfg, 0, "train", i).label for i in range(n)]
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        pos = sum(labels) / n
        print(f"{preset:<14} {cfg.size:>5} {n:>7} {n / wall:>11.1f} {n / cpu:>10.1f} {pos:>9.2f}")

    if args.cache_workers:
        n = max(1, round(2000 * args.scale))
        with tempfile.TemporaryDirectory() as out:
            t0 = time.perf_counter()
            write_pathfinder(
                out, "pathfinder32", n, contour_length=args.contour_length, workers=args.cache_workers
            )
            wall = time.perf_counter() - t0
        print(
            f"write_pathfinder pathfinder32, {n} images, {args.cache_workers} workers: "
            f"{n / wall:.1f} images/s (wall, including start-up)"
        )


if __name__ == "__main__":
    main()
