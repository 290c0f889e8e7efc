"""Pathfinder / Path-X: seeded generators of the "snakes" task, after Linsley et al.,
"Learning long-range spatial dependencies with horizontal gated recurrent units"
(NeurIPS 2018), at the Long Range Arena sizes (Tay et al., "Long Range Arena", ICLR 2021).

Each image holds two *target* snakes and a few *distractor* snakes; two circular
markers sit on snake ends, on the same snake (label 1) or on the two target snakes
(label 0). The task asks whether the markers are connected. Two styles:

- `style="lra"` (the default, `SnakesConfig`; the algorithm, its parameters and
  where it differs from the original are in `_snakes.py`): the snakes generator as
  LRA ran it. A snake is a *dashed* chain of antialiased paddles with gaps of about
  `2 margin` px; images are byte-scaled as the original saved them. The lit pixels
  do not connect the markers exactly when they are on one snake, so a flood fill
  does not solve the task.
- `style="continuous"` (`PathfinderConfig`, seqkit's first generator, kept byte for
  byte): each snake is one unbroken line and different snakes never touch, so the
  pixels `> 0` connect the two markers exactly when the label is 1 (easier).

In both styles the two classes have the same distribution of marker distance (a
distance-only classifier is at chance), the labels are balanced over every aligned
pair of indices, and every example is a pure function of `(seed, split, index)` (and
the level): its random stream is `numpy.random.SeedSequence([seed, split_id,
index])`, so any example regenerates alone, in any batch, and a split can be written
by parallel workers.

The continuous style, in detail: paddles are drawn end to end, supersampled
`antialias_scale`x with a thickness that keeps every pixel the centre line passes
through lit, so one snake's lit pixels are 8-connected. Every paddle and marker is
checked, before it is drawn, against an occupancy map of the other snakes dilated by
`margin` pixels (Chebyshev), so different snakes never touch, not even diagonally.
B starts as far from A's start as A's end is (at least `seed_distance`), in a random
direction; the markers are A's two ends (label 1) or the two starts (label 0).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Callable, Sequence

import numpy as np

from seqkit._paths import expand_path

from ._files import (
    LARGER_CACHE,
    DataError,
    cache_kind,
    check_same_settings,
    one_line,
    other_cache,
    other_kind,
    read_json_file,
    split_size,
)
from ._index import check_index
from ._snakes import SNAKES_PRESETS, SnakesConfig, generate_snakes_batch

# Bumped whenever the pixels produced for a given (preset, seed, split, index) change;
# per style (a cache records the style and its version).
GENERATOR_VERSIONS = {"continuous": 1, "lra": 2}
GENERATOR_VERSION = GENERATOR_VERSIONS["lra"]
STYLES = ("lra", "continuous")

SPLIT_IDS = {"train": 0, "val": 1, "test": 2}

# Release sizes (Long Range Arena): 200k images per level, split 80/10/10.
RELEASE_SIZE = 200_000
RELEASE_FRACTIONS = {"train": 0.8, "val": 0.1, "test": 0.1}

_FOREIGN = np.int16(-2)  # owner id of the border ring around the canvas
_EMPTY = np.int16(-1)


@dataclasses.dataclass(frozen=True)
class PathfinderConfig:
    """Geometry of one Pathfinder level of the `continuous` style (unbroken snakes);
    lengths in output pixels. The default `lra` style uses `SnakesConfig`.

    **Arguments:**

    - `size`: image side (the sequence length is `size**2`).
    - `seed_distance`: least distance between the two markers (and between the
      start points of the two target snakes).
    - `marker_radius`: radius of the two circular markers.
    - `paddle_length`, `paddle_thickness`: one paddle's length and width.
    - `continuity`: sharpness of the preference for small turns; a turn by `Δθ`
      has weight `exp(2 continuity (cos Δθ - 1))`.
    - `margin`: empty pixels (Chebyshev) kept between different snakes.
    - `num_distractors`: number of distractor snakes.
    - `contrast`: paddle intensity in `(0, 1]` (markers are drawn at 1).
    - `contour_length`: paddles per target snake (6, 9 or 14; LRA uses 14).
    - `antialias_scale`: supersampling factor.
    - `num_orientations`: candidate orientations tried per paddle.
    """

    size: int
    seed_distance: float
    marker_radius: float
    paddle_length: float
    paddle_thickness: float
    continuity: float
    margin: int
    num_distractors: int
    contrast: float
    contour_length: int = 14
    antialias_scale: int = 4
    num_orientations: int = 16

    def __post_init__(self):
        if self.contour_length < 1:
            raise ValueError(f"expected contour_length >= 1, got {self.contour_length}")
        if self.margin < 1:
            raise ValueError(f"expected margin >= 1, got {self.margin}")
        # Every subpixel the centre line crosses must be lit (connectivity of a snake):
        # half the thickness must reach a subpixel's half diagonal.
        if self.paddle_thickness / 2 < math.sqrt(0.5) / self.antialias_scale:
            raise ValueError(
                f"paddle_thickness {self.paddle_thickness} is too thin for antialias_scale "
                f"{self.antialias_scale}: expected >= {math.sqrt(2) / self.antialias_scale:.3f}"
            )

    @property
    def style(self) -> str:
        return "continuous"

    @property
    def distractor_length(self) -> int:
        """Paddles per distractor snake: `contour_length // 3` (Linsley et al. 2018)."""
        return max(1, self.contour_length // 3)

    @property
    def seq_len(self) -> int:
        return self.size * self.size


# The Long Range Arena Pathfinder / Path-X sizes (Tay et al. 2021), one row per preset,
# in the field order of PathfinderConfig.
# fmt: off
_PRESET_TABLE = {
    #               size  seed_dist  marker_r  paddle_len  thickness  continuity  margin  distract  contrast
    "pathfinder32":  (32,   7.0,       1.5,      2.0,        0.5,       1.0,        1,      5,         0.75),
    "pathfinder64":  (64,   12.0,      2.5,      5.0,        1.0,       1.8,        1,      5,         0.8),
    "pathx":         (128,  20.0,      3.0,      5.0,        1.5,       1.8,        2,      8,         0.9),
    "pathfinder256": (256,  27.0,      5.0,      5.0,        2.0,       1.8,        3,      7,         1.0),
}
# fmt: on
PATHFINDER_PRESETS: dict[str, PathfinderConfig] = {
    name: PathfinderConfig(*row) for name, row in _PRESET_TABLE.items()
}

CONTOUR_LENGTHS = (6, 9, 14)


def pathfinder_config(
    preset: str, contour_length: int = 14, style: str = "lra"
) -> SnakesConfig | PathfinderConfig:
    """The configuration of a preset (`pathfinder32`, `pathfinder64`, `pathx`,
    `pathfinder256`) at a difficulty level (`contour_length` 6, 9 or 14) in a style:
    `"lra"` (dashed snakes as LRA generated them, `SnakesConfig`) or `"continuous"`
    (seqkit's unbroken snakes, `PathfinderConfig`)."""
    if preset not in PATHFINDER_PRESETS:
        raise ValueError(
            f"unknown Pathfinder preset {preset!r}; expected one of {sorted(PATHFINDER_PRESETS)}"
        )
    if contour_length not in CONTOUR_LENGTHS:
        raise ValueError(f"expected contour_length in {CONTOUR_LENGTHS}, got {contour_length}")
    if style == "lra":
        return dataclasses.replace(SNAKES_PRESETS[preset], contour_length=contour_length)
    if style == "continuous":
        return dataclasses.replace(PATHFINDER_PRESETS[preset], contour_length=contour_length)
    raise ValueError(f"expected style in {STYLES}, got {style!r}")


def split_id(split: str | int) -> int:
    if isinstance(split, str):
        if split not in SPLIT_IDS:
            raise ValueError(f"expected split in {tuple(SPLIT_IDS)}, got {split!r}")
        return SPLIT_IDS[split]
    if split not in SPLIT_IDS.values():
        raise ValueError(f"expected split id in (0, 1, 2), got {split}")
    return int(split)


class _Stuck(Exception):
    """A snake could not be continued; the caller retries."""


@dataclasses.dataclass(frozen=True)
class PathfinderExample:
    """One generated example: the image, its label and the marker centres.

    `paddles` (`lra` style only, else None): every paddle drawn, `(n, 7)` float64 in
    drawing order and without snake ids: its pivot (row, col), its orientation (from
    the pivot towards the paddle's far end, radians), the stroke's start (row, col;
    an integer pixel) and end (row, col). A snake's ends are the start of its first
    paddle and the start of its last; `markers` are two of these.
    """

    image: np.ndarray  # (size, size) uint8
    label: int
    markers: np.ndarray  # (2, 2) float64, (row, col) of the two marker centres
    paddles: np.ndarray | None = None


class _Canvas:
    """Padded drawing state: intensities, snake owner ids and paddle indices."""

    def __init__(self, cfg: PathfinderConfig):
        self.cfg = cfg
        self.scale = cfg.antialias_scale
        self.radius = cfg.paddle_thickness / 2
        # Pixels whose centre lies within `radius + sqrt(1/2)` of a segment contain
        # every pixel that segment lights: a conservative footprint for checks.
        self.reach = self.radius + math.sqrt(0.5)
        reach_marker = cfg.marker_radius + math.sqrt(0.5)
        self.h_paddle = math.ceil(cfg.paddle_length + self.reach) + 1
        self.h_marker = math.ceil(reach_marker) + 1
        self.pad = max(self.h_paddle, self.h_marker) + cfg.margin + 2
        n = cfg.size + 2 * self.pad
        self.image = np.zeros((n, n), np.float32)
        self.owner = np.full((n, n), _FOREIGN, np.int16)
        p = self.pad
        self.owner[p:-p, p:-p] = _EMPTY
        self.index = np.zeros((n, n), np.int16)
        self.blocked = None  # other snakes dilated by margin, for the snake being drawn

    def snapshot(self):
        return self.image.copy(), self.owner.copy(), self.index.copy()

    def restore(self, snap):
        self.image, self.owner, self.index = (a.copy() for a in snap)

    def begin_snake(self, sid: int):
        """Precompute the cells a new piece of snake `sid` may not light."""
        other = (self.owner != _EMPTY) & (self.owner != sid)
        m = self.cfg.margin
        # Separable Chebyshev dilation by `m` pixels.
        d = other.copy()
        for s in range(1, m + 1):
            d[s:] |= other[:-s]
            d[:-s] |= other[s:]
        e = d.copy()
        for s in range(1, m + 1):
            e[:, s:] |= d[:, :-s]
            e[:, :-s] |= d[:, s:]
        self.blocked = e

    # -- geometry -------------------------------------------------------------
    def _window(self, center, h):
        """Top-left corner (padded coordinates) of the (2h+1)^2 window around `center`."""
        r0 = math.floor(center[0]) + self.pad - h
        c0 = math.floor(center[1]) + self.pad - h
        return r0, c0

    def _free(self, footprint, r0, c0, sid, max_own_index):
        """Which candidate footprints (K, n, n) avoid other snakes and old own paddles."""
        n = footprint.shape[-1]
        blocked = self.blocked[r0 : r0 + n, c0 : c0 + n]
        own_old = (self.owner[r0 : r0 + n, c0 : c0 + n] == sid) & (
            self.index[r0 : r0 + n, c0 : c0 + n] <= max_own_index
        )
        bad = blocked | own_old
        return ~np.any(footprint & bad, axis=(-2, -1))

    def _draw(self, cover, r0, c0, intensity, sid, paddle_index):
        n = cover.shape[-1]
        sl = (slice(r0, r0 + n), slice(c0, c0 + n))
        np.maximum(self.image[sl], intensity * cover, out=self.image[sl])
        lit = cover > 0
        owner = self.owner[sl]
        new = lit & (owner == _EMPTY)
        assert not np.any(lit & (owner != _EMPTY) & (owner != sid)), "snakes touch"
        owner[new] = sid
        self.index[sl][new] = paddle_index

    def _subpixels(self, r0, c0, n):
        s = self.scale
        off = (np.arange(n * s) + 0.5) / s - self.pad
        return r0 + off, c0 + off

    def marker(self, center, sid, paddle_index, check=True):
        """Draw a disk marker at `center`; raise `_Stuck` if it would touch another snake."""
        h = self.h_marker
        r0, c0 = self._window(center, h)
        n = 2 * h + 1
        if check:
            rows = r0 - self.pad + 0.5 + np.arange(n)
            cols = c0 - self.pad + 0.5 + np.arange(n)
            d2 = (rows[:, None] - center[0]) ** 2 + (cols[None, :] - center[1]) ** 2
            reach = self.cfg.marker_radius + math.sqrt(0.5)
            if not self._free((d2 <= reach * reach)[None], r0, c0, sid, -1)[0]:
                raise _Stuck
        ys, xs = self._subpixels(r0, c0, n)
        d2 = (ys[:, None] - center[0]) ** 2 + (xs[None, :] - center[1]) ** 2
        inside = (d2 <= self.cfg.marker_radius**2).astype(np.float32)
        s = self.scale
        cover = inside.reshape(n, s, n, s).mean(axis=(1, 3))
        self._draw(cover, r0, c0, 1.0, sid, paddle_index)

    def paddle(self, rng, p, theta, sid, k):
        """Add paddle `k` of snake `sid` starting at `p`; returns its end point and heading.

        `theta` is the previous heading (None for a snake's first paddle: any
        orientation). Raises `_Stuck` when no candidate orientation is free.
        """
        cfg = self.cfg
        K = cfg.num_orientations
        if theta is None:
            angles = rng.uniform(0, 2 * np.pi) + np.arange(K) * (2 * np.pi / K)
            weights = np.ones(K)
        else:
            # Turns in (-pi/2, pi/2), jittered so orientations are continuous.
            turns = (np.arange(K) + rng.uniform()) * (np.pi / K) - np.pi / 2
            angles = theta + turns
            weights = np.exp(2.0 * cfg.continuity * (np.cos(turns) - 1.0))
        d = np.empty((K, 2))  # (K, 2) candidate displacements, (row, col)
        d[:, 0] = np.sin(angles) * cfg.paddle_length
        d[:, 1] = np.cos(angles) * cfg.paddle_length
        h = self.h_paddle
        n = 2 * h + 1
        r0, c0 = self._window(p, h)
        rows = r0 - self.pad + 0.5 + np.arange(n)
        cols = c0 - self.pad + 0.5 + np.arange(n)
        near = _segment_dist2(rows, cols, p, d) <= self.reach * self.reach  # (K, n, n)
        free = self._free(near, r0, c0, sid, k - 3)
        if not np.any(free):
            raise _Stuck
        # Sample a free orientation with probability proportional to its weight.
        cum = np.cumsum(weights * free)
        j = min(int(np.searchsorted(cum, rng.uniform() * cum[-1], side="right")), K - 1)
        ys, xs = self._subpixels(r0, c0, n)
        inside = _segment_dist2(ys, xs, p, d[j : j + 1])[0] <= self.radius * self.radius
        s = self.scale
        cover = inside.reshape(n, s, n, s).sum(axis=(1, 3), dtype=np.float32) / np.float32(s * s)
        self._draw(cover, r0, c0, cfg.contrast, sid, k)
        return p + d[j], angles[j]


def _segment_dist2(rows, cols, p, d):
    """Squared distance from grid points (rows x cols) to segments p -> p + d[k]: (K, n, m)."""
    dy = d[:, 0, None, None]
    dx = d[:, 1, None, None]
    ry = (rows - p[0])[None, :, None]
    rx = (cols - p[1])[None, None, :]
    t = ry * (dy / (dy * dy + dx * dx)) + rx * (dx / (dy * dy + dx * dx))
    np.clip(t, 0.0, 1.0, out=t)
    ey = ry - t * dy
    ex = rx - t * dx
    ey *= ey
    ex *= ex
    ey += ex
    return ey


def _snake(canvas, rng, start, sid, length, *, first_index=0):
    """Grow `length` paddles from `start`; returns the end point. Raises `_Stuck`."""
    canvas.begin_snake(sid)
    p, theta = np.asarray(start, np.float64), None
    for k in range(length):
        p, theta = canvas.paddle(rng, p, theta, sid, first_index + k)
    return p


def _place_markers(canvas, pair, length):
    """Draw markers at the two `(snake id, point)` of `pair`; raises `_Stuck` if one does not fit."""
    for sid, point in pair:
        canvas.begin_snake(sid)
        canvas.marker(point, sid, length)
    return np.stack([pair[0][1], pair[1][1]])


def _label(seed: int, split: int, index: int) -> int:
    # Labels are balanced exactly over every aligned pair (2j, 2j+1), without a
    # parity pattern: a random bit per pair decides which of the two is positive.
    bit = np.random.default_rng(np.random.SeedSequence([seed, split, index // 2, 1])).integers(2)
    return int(bit) ^ (index & 1)


def _stream(seed: int, split: int, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), split, index]))


def generate_pathfinder(
    cfg: SnakesConfig | PathfinderConfig, seed: int, split: str | int, index: int
) -> PathfinderExample:
    """Generate example `index` of `split` for seed `seed`: a pure function of its arguments.

    **Arguments:**

    - `cfg`: the level and style (see `pathfinder_config`).
    - `seed`, `split` (`"train"`, `"val"`, `"test"` or 0, 1, 2), `index`: the example.

    **Returns:**

    A `PathfinderExample` with `image` (`(size, size)` uint8), `label` (1 when the
    two markers lie on the same snake), `markers` (their `(row, col)` centres) and,
    in the `lra` style, `paddles`. `generate_pathfinder_batch` gives the same
    examples, faster.
    """
    sid = split_id(split)
    index = int(index)
    if index < 0:
        raise ValueError(f"expected index >= 0, got {index}")
    label = _label(int(seed), sid, index)
    rng = _stream(seed, sid, index)
    if isinstance(cfg, SnakesConfig):
        images, markers, paddles = generate_snakes_batch(cfg, [rng], [label], record=True)
        return PathfinderExample(image=images[0], label=label, markers=markers[0], paddles=paddles[0])
    size, L = cfg.size, cfg.contour_length
    border = cfg.marker_radius + cfg.margin + 1
    for _ in range(200):
        canvas = _Canvas(cfg)
        try:
            a0 = rng.uniform(border, size - border, size=2)
            a1 = _snake(canvas, rng, a0, 0, L)  # target snake A (id 0)
            d = a1 - a0  # not np.linalg.norm: its BLAS dot rounds differently per CPU
            reach = np.sqrt(d[0] * d[0] + d[1] * d[1])
            if reach < cfg.seed_distance:
                raise _Stuck
            # Target snake B (id 1) starts as far from A's start as A's end is, so the
            # two marker pairs (A start, A end) and (A start, B start) are equally far
            # apart: marker distance says nothing about the label.
            snap = canvas.snapshot()
            for _ in range(20):
                phi = rng.uniform(0, 2 * np.pi)
                b0 = a0 + reach * np.array([np.sin(phi), np.cos(phi)])
                if not np.all((b0 >= border) & (b0 <= size - border)):
                    continue
                try:
                    _snake(canvas, rng, b0, 1, L)
                    break
                except _Stuck:
                    canvas.restore(snap)
            else:
                raise _Stuck
            pair = ((0, a0), (0, a1)) if label == 1 else ((0, a0), (1, b0))
            markers = _place_markers(canvas, pair, L)
        except _Stuck:
            continue
        break
    else:  # pragma: no cover - the geometry of every preset leaves plenty of room
        raise RuntimeError(f"could not place the target snakes for example {(seed, split, index)}")
    # Distractors: shorter snakes anywhere free; a stuck one keeps what it has.
    for j in range(cfg.num_distractors):
        sid_d = 2 + j
        for _ in range(10):
            start = rng.uniform(border, size - border, size=2)
            canvas.begin_snake(sid_d)
            p, theta, drawn = start, None, 0
            try:
                for k in range(cfg.distractor_length):
                    p, theta = canvas.paddle(rng, p, theta, sid_d, k)
                    drawn += 1
            except _Stuck:
                pass
            if drawn:
                break
    pad = canvas.pad
    pixels = canvas.image[pad:-pad, pad:-pad]
    image = np.round(np.clip(pixels, 0.0, 1.0) * 255.0).astype(np.uint8)
    return PathfinderExample(image=image, label=label, markers=markers)


def generate_pathfinder_batch(
    cfg: SnakesConfig | PathfinderConfig, seed: int, split: str | int, indices: Sequence[int]
) -> list[PathfinderExample]:
    """`[generate_pathfinder(cfg, seed, split, i) for i in indices]`; the `lra` style
    grows the snakes of many images in lockstep (tens of times faster per image than
    one at a time, for a few hundred or more)."""
    sid = split_id(split)
    indices = [int(i) for i in indices]
    if any(i < 0 for i in indices):
        raise ValueError(f"expected indices >= 0, got {min(indices)}")
    if not isinstance(cfg, SnakesConfig):
        return [generate_pathfinder(cfg, seed, sid, i) for i in indices]
    labels = [_label(int(seed), sid, i) for i in indices]
    rngs = [_stream(seed, sid, i) for i in indices]
    images, markers, paddles = generate_snakes_batch(cfg, rngs, labels, record=True)
    return [
        PathfinderExample(image=images[j], label=labels[j], markers=markers[j], paddles=paddles[j])
        for j in range(len(indices))
    ]


def _generate_arrays(
    cfg: SnakesConfig | PathfinderConfig, seed: int, split: str, start: int, stop: int
) -> tuple[np.ndarray, np.ndarray]:
    """Images `(n, size, size)` uint8 and labels `(n,)` of examples `start..stop-1`."""
    sid = split_id(split)
    labels = np.array([_label(int(seed), sid, i) for i in range(start, stop)], np.uint8)
    if isinstance(cfg, SnakesConfig):
        rngs = [_stream(seed, sid, i) for i in range(start, stop)]
        images, _, _ = generate_snakes_batch(cfg, rngs, labels)
        return images, labels
    images = np.stack([generate_pathfinder(cfg, seed, sid, i).image for i in range(start, stop)])
    return images, labels


def _to_inputs(image: np.ndarray, as_tokens: bool) -> np.ndarray:
    flat = image.reshape(-1)
    if as_tokens:
        return flat.astype(np.int32)
    return (flat.astype(np.float32) / np.float32(255.0))[:, None]


def default_split_size(split: str) -> int:
    return round(RELEASE_SIZE * RELEASE_FRACTIONS[split])


class PathfinderSource:
    """Random-access source generating Pathfinder examples on the fly.

    `source[i]` is `dict(inputs, label)`: `inputs` float32 `(size**2, 1)` pixels in
    `[0, 1]`, or int32 `(size**2,)` tokens `0..255` with `as_tokens=True`; `label`
    int32. Example `i` is `generate_pathfinder(cfg, seed, split, i)`.
    """

    def __init__(
        self,
        cfg: SnakesConfig | PathfinderConfig,
        split: str,
        *,
        seed: int = 0,
        size: int | None = None,
        as_tokens: bool = False,
    ):
        split_id(split)
        self.cfg = cfg
        self.split = split
        self.seed = int(seed)
        if self.seed < 0:  # here, not in a worker's first item
            raise ValueError(f"expected a data seed >= 0, got {seed}")
        self.size = default_split_size(split) if size is None else int(size)
        if self.size < 0:
            raise ValueError(f"expected size >= 0, got {size}")
        self.as_tokens = bool(as_tokens)

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, i):
        i = check_index(i, self.size)
        ex = generate_pathfinder(self.cfg, self.seed, self.split, i)
        return {"inputs": _to_inputs(ex.image, self.as_tokens), "label": np.int32(ex.label)}

    def __repr__(self):
        return (
            f"PathfinderSource(size={self.cfg.size}, contour_length={self.cfg.contour_length}, "
            f"style={self.cfg.style!r}, split={self.split!r}, seed={self.seed}, n={self.size})"
        )


# -- memory-mapped cache --------------------------------------------------------------

METADATA = "metadata.json"


def _split_sizes(size: int, splits: Sequence[float]) -> dict[str, int]:
    if len(splits) != 3 or any(f < 0 for f in splits) or not math.isclose(sum(splits), 1.0):
        raise ValueError(f"expected three non-negative split fractions summing to 1, got {splits}")
    val = round(size * splits[1])
    test = round(size * splits[2])
    return {"train": size - val - test, "val": val, "test": test}


def _short_splits(size: int, splits: Sequence[float]) -> list[str]:
    """The splits with a fraction > 0 that get no image out of `size`."""
    counts = _split_sizes(size, splits)
    return [s for s, f in zip(counts, splits, strict=True) if f > 0 and counts[s] < 1]


def _check_split_sizes(size: int, splits: Sequence[float]) -> dict[str, int]:
    """The images per split; ValueError unless every split with a fraction > 0 gets one."""
    counts = _split_sizes(size, splits)
    if size >= 1 and not _short_splits(size, splits):
        return counts
    # Rounding makes the least size no closed form; it is near 0.5 / (least fraction).
    least = max(1, size + 1, *(math.floor(0.5 / f) for f in splits if f > 0))
    while _short_splits(least, splits):
        least += 1
    short = ", ".join(_short_splits(size, splits)) if size >= 1 else "every split"
    fractions = ", ".join(f"{s} {f:g}" for s, f in zip(counts, splits, strict=True))
    got = ", ".join(f"{s} {n}" for s, n in counts.items())
    raise ValueError(
        f"expected size >= {least} so that every split ({fractions}) gets at least one image, "
        f"got {size} ({got}: {short} would be empty)"
    )


def _cache_paths(out_dir: str, split: str) -> tuple[str, str]:
    return (
        os.path.join(out_dir, f"{split}_images.npy"),
        os.path.join(out_dir, f"{split}_labels.npy"),
    )


def _worker_context():
    """Processes for `write_pathfinder`: the caller may hold JAX or grain threads,
    which a plain fork does not survive. A fork server (a fresh process that has
    imported this module once, kept for later writes) starts workers fast; spawn
    where there is none (Windows)."""
    import multiprocessing

    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload([__name__])
    return ctx


def _write_chunk(job):
    img_path, lab_path, cfg, seed, split, start, stop = job
    images = np.load(img_path, mmap_mode="r+")
    labels = np.load(lab_path, mmap_mode="r+")
    images[start:stop], labels[start:stop] = _generate_arrays(cfg, seed, split, start, stop)
    images.flush()
    labels.flush()
    del images, labels
    return stop - start


def write_pathfinder(
    out_dir: str | os.PathLike,
    preset: str,
    size: int,
    *,
    seed: int = 0,
    contour_length: int = 14,
    splits: Sequence[float] = (0.8, 0.1, 0.1),
    workers: int = 1,
    chunk: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    style: str = "lra",
    overwrite: bool = False,
) -> dict:
    """Write a memory-mapped Pathfinder cache of `size` images split train/val/test.

    Writes, per split, `{split}_images.npy` (`(N, H, W)` uint8) and
    `{split}_labels.npy` (`(N,)` uint8), then `metadata.json` (written last, so a
    cache with metadata is complete). Example `i` of a split equals
    `generate_pathfinder(cfg, seed, split, i)`, i.e. the on-the-fly source with the
    same seed: the cache only saves the generation time.

    Every argument is checked before anything is written. The arrays are written
    to temporary files renamed into place at the end; on any failure (or an
    interrupt) the temporaries and the directories this call created are removed,
    and a cache that was in `out_dir` before is left as it was.

    **Arguments:**

    - `out_dir`: target directory (created if needed; `~` and `$VAR` expanded).
    - `preset`, `contour_length`: the level; `seed`: the data seed.
    - `size`: total number of images; `splits`: train/val/test fractions. Every
      split with a fraction > 0 must get an image (80/10/10: `size >= 6`), else
      `ValueError`.
    - `workers`: processes generating chunks of `chunk` images in parallel (default
      256; for the `lra` style, which is faster on long chunks, about a quarter of
      each worker's share, 256 to 2048).
    - `progress`: called as `progress(done, total)` after every chunk.
    - `style`: `"lra"` (default) or `"continuous"` (see `pathfinder_config`); the
      metadata records it, and a cache is only read with the style it was written
      with.
    - `overwrite`: write even where a cache exists. Without it, a cache with the
      same settings is kept as it is, and one with other settings is refused
      (`ValueError` showing both).

    **Returns:**

    The metadata dictionary that was written.
    """
    cfg = pathfinder_config(preset, contour_length, style)
    if workers < 1:
        raise ValueError(f"expected workers >= 1, got {workers}")
    if chunk is None:
        # The lra generator is faster on long chunks; keep about four per worker.
        chunk = 256 if style != "lra" else max(256, min(2048, -(-int(size) // (4 * workers))))
    if chunk < 1:
        raise ValueError(f"expected chunk >= 1, got {chunk}")
    counts = _check_split_sizes(int(size), splits)
    if int(seed) < 0:
        raise ValueError(f"expected a data seed >= 0, got {seed}")
    out_dir = expand_path(out_dir)
    if reason := other_cache(out_dir, METADATA, "pathfinder", preset):
        raise ValueError(reason)
    if os.path.isfile(os.path.join(out_dir, METADATA)) and not overwrite:
        return _kept_cache(out_dir, _metadata(preset, cfg, int(seed), counts))
    # The directories this call creates, deepest first: removed again on failure.
    created, d = [], os.path.abspath(out_dir)
    while not os.path.exists(d) and os.path.dirname(d) != d:
        created.append(d)
        d = os.path.dirname(d)
    if not os.path.isdir(d):  # out_dir or the first existing directory above it is a file
        got = f"the file {out_dir}" if not created else f"{out_dir}, which is under the file {d}"
        raise NotADirectoryError(f"expected a directory for the Pathfinder cache, got {got}")
    temporaries = []
    try:
        os.makedirs(out_dir, exist_ok=True)
        jobs, finals = [], []
        for split, n in counts.items():
            for final, shape in zip(
                _cache_paths(out_dir, split), ((n, cfg.size, cfg.size), (n,)), strict=True
            ):
                tmp = final + ".tmp"
                temporaries.append(tmp)
                finals.append((tmp, final))
                np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
            img_tmp, lab_tmp = temporaries[-2:]
            for start in range(0, n, chunk):
                jobs.append((img_tmp, lab_tmp, cfg, int(seed), split, start, min(n, start + chunk)))
        total, done = int(size), 0
        if workers == 1:
            results = map(_write_chunk, jobs)
            for r in results:
                done += r
                if progress is not None:
                    progress(done, total)
        else:
            with _worker_context().Pool(workers) as pool:
                for r in pool.imap_unordered(_write_chunk, jobs):
                    done += r
                    if progress is not None:
                        progress(done, total)
        meta_path = os.path.join(out_dir, METADATA)
        if os.path.exists(meta_path):
            os.remove(meta_path)  # the cache is incomplete until its metadata is written again
        for tmp, final in finals:
            os.replace(tmp, final)
        meta = _metadata(preset, cfg, int(seed), counts)
        tmp = meta_path + ".tmp"
        temporaries.append(tmp)
        with open(tmp, "w") as f:
            json.dump(meta, f, indent=2)
        os.replace(tmp, meta_path)
    except BaseException:
        for tmp in temporaries:
            if os.path.exists(tmp):
                os.remove(tmp)
        for d in created:
            try:
                os.rmdir(d)  # only while empty: never what someone else put there
            except OSError:
                break
        raise
    return meta


def _metadata(preset: str, cfg: SnakesConfig | PathfinderConfig, seed: int, counts: dict[str, int]) -> dict:
    return {
        "kind": "pathfinder",
        "preset": preset,
        "contour_length": cfg.contour_length,
        "style": cfg.style,
        "seed": seed,
        "image_size": cfg.size,
        "splits": counts,
        "generator_version": GENERATOR_VERSIONS[cfg.style],
        "config": dataclasses.asdict(cfg),
    }


_SETTINGS = ("preset", "contour_length", "style", "generator_version", "seed", "splits")


def _settings(meta: dict) -> dict:
    """What a cache was written with: preset, level, style and generator version, seed, split sizes."""
    style, version = cache_style(meta)
    return {**{k: meta.get(k) for k in _SETTINGS}, "style": style, "generator_version": version}


def _kept_cache(out_dir: str, wanted: dict) -> dict:
    """The metadata of the cache in `out_dir` when it was written with the settings of
    `wanted`; ValueError showing both otherwise (a write without `overwrite`)."""
    meta = read_pathfinder_metadata(out_dir)
    check_same_settings(out_dir, "Pathfinder", _settings(meta), _settings(wanted))
    return meta


def is_pathfinder_cache(meta: dict, preset: str) -> bool:
    """Whether cache metadata describes a cache of `preset` (at any level or style,
    which `check_pathfinder_cache` judges)."""
    return cache_kind(meta) == "pathfinder" and meta.get("preset", preset) == preset


def cache_style(meta: dict) -> tuple[str, object]:
    """The style and generator version a cache was written with (caches written
    before styles existed hold the continuous style, version 1)."""
    return meta.get("style", "continuous"), meta.get("generator_version", 1)


def check_pathfinder_cache(meta: dict, directory: str, preset: str, contour_length: int, style: str):
    """ValueError unless the cache in `directory` (its `meta`) holds `preset` at
    `contour_length`, written with `style` by the current generator version; the
    message shows both settings and how to write the cache again."""
    found_style, found_version = cache_style(meta)
    found = (meta.get("preset"), meta.get("contour_length"), found_style, found_version)
    wanted = (preset, contour_length, style, GENERATOR_VERSIONS[style])
    if found != wanted:
        level = {"preset": preset, "contour_length": contour_length, "style": style}
        raise ValueError(
            f"the cache in {directory} holds {_describe(*found)}, not {_describe(*wanted)}; "
            f"{_rewrite_advice(directory, level)}"
        )


def _describe(preset, contour_length, style, version) -> str:
    return (
        f"preset {preset!r} at contour length {contour_length}, style {style!r} (generator version {version})"
    )


def _rewrite_advice(directory: str, meta: object = None) -> str:
    """The command that writes the cache in `directory` again (its level, when known)."""
    known = meta if isinstance(meta, dict) else {}
    preset = known.get("preset")
    preset = preset if isinstance(preset, str) and preset in PATHFINDER_PRESETS else "PRESET"
    level = known.get("contour_length")
    level = f" --contour-length {level}" if level in CONTOUR_LENGTHS and level != 14 else ""
    style = known.get("style", "lra")
    style = f" --style {style}" if style in STYLES and style != "lra" else ""
    return (
        f"write the cache again with `seqkit data pathfinder --preset {preset}{level}{style} --size N "
        f"--out {directory} --overwrite`"
    )


def read_pathfinder_metadata(directory: str | os.PathLike) -> dict:
    """The metadata of a cache written by `write_pathfinder`.

    PathfinderCacheNotFoundError if absent; DataError if it is not the JSON object
    `write_pathfinder` writes (with `preset`, `image_size` and the `splits` sizes).
    """
    directory = expand_path(directory)
    path = os.path.join(directory, METADATA)
    if not os.path.exists(path):
        raise PathfinderCacheNotFoundError(
            f"no Pathfinder cache in {directory} ({path} is missing); write one with "
            f"`seqkit data pathfinder --preset PRESET --size N --out {directory}`"
        )
    meta = read_json_file(
        path, f"expected the metadata write_pathfinder writes; {_rewrite_advice(directory)}"
    )
    if reason := other_kind(meta, path, "pathfinder", "pathfinder"):
        raise DataError(reason)  # no advice to overwrite: that would destroy the other cache
    splits = meta.get("splits") if isinstance(meta, dict) else None
    sizes_ok = isinstance(splits, dict) and all(
        type(splits.get(s)) is int and splits[s] >= 0 for s in SPLIT_IDS
    )
    preset = meta.get("preset") if isinstance(meta, dict) else None
    known = isinstance(preset, str) and preset in PATHFINDER_PRESETS
    if not (sizes_ok and known and type(meta.get("image_size")) is int):
        raise DataError(
            f"{path}: expected a JSON object with 'preset' (one of {sorted(PATHFINDER_PRESETS)}), "
            f"'image_size' and 'splits' (an image count per train/val/test), got {_clip(meta)}; "
            f"{_rewrite_advice(directory, meta)}"
        )
    return meta


def _clip(value, n: int = 120) -> str:
    text = " ".join(repr(value).split())
    return text if len(text) <= n else text[: n - 3] + "..."


class PathfinderCacheNotFoundError(FileNotFoundError):
    """A Pathfinder cache directory lacks its files; the message says how to write it."""


class PathfinderCacheSource:
    """Random-access source over a cache written by `write_pathfinder`.

    Holds only paths: the memory maps open lazily on first access, so the source
    pickles small (for grain worker processes). The metadata and both arrays are
    checked when the source is built: a missing file raises
    `PathfinderCacheNotFoundError`, a truncated or corrupt one `DataError`.
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        split: str,
        *,
        size: int | None = None,
        as_tokens: bool = False,
    ):
        split_id(split)
        self.directory = expand_path(directory)
        self.split = split
        self.metadata = read_pathfinder_metadata(self.directory)
        available = self.metadata["splits"][split]
        self._check_arrays(available)  # a bad file fails here, before any training
        self.size = split_size(size, available, split, f"the cached {split} split", LARGER_CACHE)
        self.as_tokens = bool(as_tokens)
        self._images = None
        self._labels = None

    def _check_arrays(self, n: int):
        """Open both arrays once: DataError unless they have the shapes the metadata says."""
        side = self.metadata["image_size"]
        advice = _rewrite_advice(self.directory, self.metadata)
        for path, shape in zip(
            _cache_paths(self.directory, self.split), ((n, side, side), (n,)), strict=True
        ):
            expected = f"a {shape} uint8 array ({METADATA} says {n} {self.split} images of {side}x{side})"
            if not os.path.exists(path):
                raise PathfinderCacheNotFoundError(f"{path} is missing: expected {expected}; {advice}")
            try:
                array = np.lib.format.open_memmap(path, mode="r")
            except (ValueError, EOFError) as e:  # a short or foreign file: header or size mismatch
                raise DataError(
                    f"{path} is not a readable .npy array (truncated or corrupt?): {one_line(e)}; "
                    f"expected {expected}; {advice}"
                ) from None
            found = (array.shape, array.dtype)
            del array  # the maps open lazily (in each worker), see _open
            if found != (shape, np.dtype(np.uint8)):
                raise DataError(f"{path}: expected {expected}, got {found[0]} {found[1]}; {advice}")

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_images"] = state["_labels"] = None
        return state

    def _open(self):
        img_path, lab_path = _cache_paths(self.directory, self.split)
        self._images = np.load(img_path, mmap_mode="r")
        self._labels = np.load(lab_path, mmap_mode="r")

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, i):
        i = check_index(i, self.size)
        if self._images is None:
            self._open()
        image = np.asarray(self._images[i])
        return {"inputs": _to_inputs(image, self.as_tokens), "label": np.int32(self._labels[i])}

    def __repr__(self):
        return f"PathfinderCacheSource({self.directory!r}, split={self.split!r}, n={self.size})"
