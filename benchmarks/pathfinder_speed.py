"""Pathfinder/Path-X generator speed and image statistics, per preset and style.

Speed: `write_pathfinder` writing a cache with 1 worker (in this process) and with 2
worker processes. The first write with workers starts a fork server that imports
`seqkit.data` (grain and JAX, a few seconds; a warm-up write pays it here), and each
worker builds the generator's tables once: the table also gives the steady rate,
`size / (time - time of a 6-image write)`. Rates are images per second of wall-clock
time, and with 1 worker also per second of CPU time, steadier on a shared machine;
all are noisy while others use the machine (run several times and take the best).

Statistics (`--stats`): per preset, level and style, over `--stats-images` images:
lit fraction (pixels > 0), fraction of pixels > 128, 8-connected components of the
pixels > 0 and > 64 (mean ± std over images), marker distance (mean ± std) and how
often "the markers are connected by lit pixels" equals the label (a flood fill;
0.5 is chance). For the `lra` style it also prints what the original generator's
parameters predict for the paddles per image and the lit / bright fractions before
overlaps (`pred`), from the sprites themselves.

    python benchmarks/pathfinder_speed.py                       # speed, lra style
    python benchmarks/pathfinder_speed.py --styles lra continuous --scale 0.2
    python benchmarks/pathfinder_speed.py --presets pathfinder32 pathx --no-speed --stats
"""

import argparse
import os
import tempfile
import time

import numpy as np

from seqkit.data import generate_pathfinder_batch, pathfinder_config, write_pathfinder

# Images written per (preset, style) at --scale 1: tens of seconds each.
COUNTS = {
    ("pathfinder32", "lra"): 20_000,
    ("pathfinder64", "lra"): 1_000,
    ("pathx", "lra"): 1_500,
    ("pathfinder256", "lra"): 300,
    ("pathfinder32", "continuous"): 3_000,
    ("pathfinder64", "continuous"): 1_000,
    ("pathx", "continuous"): 400,
    ("pathfinder256", "continuous"): 100,
}
STATS_IMAGES = {"pathfinder32": 400, "pathfinder64": 100, "pathx": 100, "pathfinder256": 24}


def _write(preset, style, size, workers, contour_length) -> tuple[float, float]:
    """Wall seconds and CPU seconds of this process of one write."""
    with tempfile.TemporaryDirectory() as out:
        t0, c0 = time.perf_counter(), time.process_time()
        write_pathfinder(
            os.path.join(out, "c"), preset, size, contour_length=contour_length, workers=workers, style=style
        )
        return time.perf_counter() - t0, time.process_time() - c0


def speed(presets, styles, scale, contour_length, workers_list):
    print(f"write_pathfinder speed, contour length {contour_length}")
    print("(images per second of wall time; steady: without worker start-up; cpu: per CPU second)")
    cols = ("preset", "style", "images", "workers", "img/s", "steady", "cpu img/s")
    print("{:<14} {:<10} {:>7} {:>7} {:>8} {:>8} {:>10}".format(*cols))
    for preset in presets:
        for style in styles:
            n = max(6, round(COUNTS[(preset, style)] * scale))
            _write(preset, style, 6, 1, contour_length)  # warm-up: tables of this process
            _write(preset, style, 6, max(workers_list), contour_length)  # and the fork server
            for workers in workers_list:
                base = _write(preset, style, 6, workers, contour_length)[0] if workers > 1 else 0.0
                wall, cpu = _write(preset, style, n, workers, contour_length)
                # the start-up (6 images) subtracted: meaningful only for a run well above it
                steady = f"{n / (wall - base):>8.1f}" if n > 6 and wall > 1.5 * base else f"{'n/a':>8}"
                per_cpu = f"{n / cpu:>10.1f}" if workers == 1 else f"{'-':>10}"
                rates = f"{n / wall:>8.1f} {steady} {per_cpu}"
                print(f"{preset:<14} {style:<10} {n:>7} {workers:>7} {rates}", flush=True)


def _predicted(cfg):
    """What the parameters give before any overlap: paddles per image, and the
    fraction of pixels a paddle lights (> 0) and lights brightly (> 128 after the
    image is scaled to its brightest pixel), averaged over orientations."""
    from seqkit.data._snakes import snakes_kit  # the sprites the generator draws

    paddles = 2 * cfg.contour_length + cfg.num_distractors * cfg.distractor_length
    lit, bright = [], []
    target = cfg.snake_contrast * cfg.paddle_contrast
    kits = [snakes_kit(cfg, m) for m in cfg.paddle_margins]
    top = max(1.0, cfg.snake_contrast * max(k.lines.max() for k in kits))  # the brightest pixel
    for kit in kits:
        lit.append((kit.lines > 0).sum(axis=(1, 2)).mean())
        n_t, n_d = 2 * cfg.contour_length, cfg.num_distractors * cfg.distractor_length
        b_t = (kit.lines * target / top * 255 > 128).sum(axis=(1, 2)).mean()
        b_d = (kit.lines * cfg.snake_contrast / top * 255 > 128).sum(axis=(1, 2)).mean()
        bright.append((n_t * b_t + n_d * b_d) / paddles)
    area = cfg.size * cfg.size
    return paddles, paddles * np.mean(lit) / area, paddles * np.mean(bright) / area


def stats(presets, styles, levels, n_images):
    import scipy.ndimage as ndi

    eight = np.ones((3, 3), bool)
    print("image statistics (mean ± std over images)")
    head = f"{'preset':<14} {'cl':>2} {'style':<10} {'lit':>12} {'>128':>12} {'comp>0':>11} {'comp>64':>11}"
    print(f"{head} {'snakes':>6} {'marker dist':>12} {'flood':>5}  pred paddles/lit/>128")
    for preset in presets:
        for cl in levels:
            for style in styles:
                cfg = pathfinder_config(preset, cl, style)
                n = n_images or STATS_IMAGES[preset]
                examples = generate_pathfinder_batch(cfg, 0, "train", range(n))
                images = np.stack([ex.image for ex in examples])
                labels = np.array([ex.label for ex in examples])
                lit = (images > 0).mean(axis=(1, 2))
                hi = (images > 128).mean(axis=(1, 2))
                comp0, comp64, flood = [], [], []
                for ex in examples:
                    lab0, c0 = ndi.label(ex.image > 0, structure=eight)
                    comp0.append(c0)
                    comp64.append(ndi.label(ex.image > 64, structure=eight)[1])
                    a, b = (tuple(int(v) for v in m) for m in ex.markers)
                    flood.append((lab0[a] > 0 and lab0[a] == lab0[b]) == (ex.label == 1))
                dist = np.hypot(*(np.stack([ex.markers[0] - ex.markers[1] for ex in examples]).T))
                snakes = 2 + cfg.num_distractors
                pred = ""
                if style == "lra":
                    p, plit, phi = _predicted(cfg)
                    pred = f"  {p} / {plit:.3f} / {phi:.3f}"
                comp0, comp64 = np.array(comp0), np.array(comp64)
                cells = [
                    f"{preset:<14} {cl:>2} {style:<10}",
                    f"{lit.mean():.3f}±{lit.std():.3f} {hi.mean():.3f}±{hi.std():.3f}",
                    f"{comp0.mean():5.1f}±{comp0.std():4.1f} {comp64.mean():5.1f}±{comp64.std():4.1f}",
                    f"{snakes:>6}",
                    f"{dist.mean():5.1f}±{dist.std():5.1f} {np.mean(flood):5.2f}{pred}",
                ]
                if abs(labels.mean() - 0.5) >= 0.1:
                    cells.append(f" (positives {labels.mean():.2f})")
                print(" ".join(cells), flush=True)


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--presets", nargs="+", default=["pathfinder32", "pathfinder64", "pathx", "pathfinder256"]
    )
    parser.add_argument("--styles", nargs="+", default=["lra"], choices=["lra", "continuous"])
    parser.add_argument("--contour-length", type=int, default=14, choices=(6, 9, 14))
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the image counts")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--no-speed", action="store_true")
    parser.add_argument("--stats", action="store_true", help="print image statistics per level")
    parser.add_argument("--stats-images", type=int, default=0, help="images per level (default per preset)")
    parser.add_argument("--levels", type=int, nargs="+", default=[6, 9, 14])
    args = parser.parse_args()
    if not args.no_speed:
        speed(args.presets, args.styles, args.scale, args.contour_length, args.workers)
    if args.stats:
        stats(args.presets, args.styles, args.levels, args.stats_images)


if __name__ == "__main__":
    main()
