"""The "snakes" Pathfinder generator as Long Range Arena ran it (`style="lra"`).

After Linsley, Kim, Veerabadran, Windolf and Serre, "Learning long-range spatial
dependencies with horizontal gated recurrent units" (NeurIPS 2018), whose generator
(`snakes.py` / `snakes2.py` of github.com/drewlinsley/pathfinder) made the Long Range
Arena Pathfinder and Path-X images (Tay et al., "Long Range Arena", ICLR 2021; LRA's
settings are listed in its `lra_benchmarks/data/pathfinder.py`). This is our own
vectorized implementation of that algorithm, not a copy of the code.

**A snake is a dashed chain of paddles.** A paddle is a straight stroke
`paddle_length` px long and `paddle_thickness` px wide, drawn at `antialias_scale`x
resolution (a one-pixel Bresenham line, or a filled rotated rectangle when wider,
exactly as Pillow draws lines) and shrunk to the image grid with Pillow's Lanczos
filter (8-bit fixed point, two passes; reproduced exactly, ringing included). Each
paddle also has an occupancy *mask*: the stroke dilated by a disk of `margin` px at
the fine resolution and shrunk the same way. A snake starts with a *seed* paddle at
an integer point in a whole-degree direction, where the seed's mask interior
(pixels at 255) covers no occupancy above 0.3; its *pivot* lies `margin` px behind
its start. Each next pivot lies `paddle_length + 2 margin` px beyond the last one
along the last orientation (rounded up from the absolute coordinate, as the
original does); the next paddle's far end is one of the integer points on the circle
of radius `paddle_length + margin` around that pivot, chosen with probability
proportional to `(1 - occupancy dilated by margin) * max(cos(min(continuity * turn,
pi/2)), 0)**2`, and the paddle is drawn from there `paddle_length` px back towards
the pivot. A draw is kept when its mask plus the occupancy (every paddle so far but
the previous one of the same snake) stays below 1.8 everywhere; three draws per
paddle, else the snake is stuck. So consecutive paddles are separated by a gap of
about `2 margin` px (less at a turn, and rounding makes a few gaps small at 1 px
margins): the images are dashed, and the lit pixels do not tell which ends belong
together.

**An image** holds two target snakes of `contour_length` paddles, then
`distractor_budget // (contour_length // 3)` distractor snakes of
`contour_length // 3` paddles (each tried five times, then left out; none once under
1% of the image is free), then two circular markers (`marker_radius`, disks shrunk
with Lanczos) on target snake ends. The first target snake's seed lies (its mask
interior) at least `2 seed_distance` px inside the border; a `padding` px ring at the
border counts as occupied. Target paddles have intensity `paddle_contrast *
snake_contrast`, distractors `snake_contrast`, markers 1 (pathfinder32: 1.5, 2 and 1:
its distractors are the brightest); the layers are max-composited and the image is
byte-scaled so that its brightest pixel is 255 (the original saved float images with
`scipy.misc.imsave`, which does this).

**Parameters** (LRA's settings; the rest are the generator's defaults):

| preset | size | seed | marker | length | width | contin. | margin | pad | snake, paddle c. | budget |
|---|---|---|---|---|---|---|---|---|---|---|
| pathfinder32 | 32 | 7 | 1.5 | 2 | 0.5 | 1.0 | 1 | 1 | 2, 0.75 | 20 |
| pathfinder64 | 64 | 12 | 2.5 | 5 | 1.0 | 1.8 | 1 | 1 | 0.8, 1 | 22 |
| pathx | 128 | 20 | 3 | 5 | 1.5 | 1.8 | 2 or 3 | 1 | 0.9, 1 | 35 |
| pathfinder256 | 256 | 27 | 5 | 5 | 2.0 | 1.8 | 3 | 22 | 1.0, 1 | 30 |

(seed: `seed_distance`; marker: `marker_radius`; length, width: of a paddle; pad:
`padding`; c.: contrast; budget: `distractor_budget`; pathx draws its margin per
image.) `antialias_scale` is 2 everywhere (LRA's list sets it to 4, then to 2),
single paddles are off, at most three draws per paddle and five tries per distractor
(the generator's defaults), and the distractor counts use integer division (the
generator ran on Python 2): 5, 5, 8, 7 distractors of 4 paddles at contour length 14.
Where written descriptions of the task differ from it, this module follows the
original code: the gap between paddles is about `2 margin` (not `margin`), the
distractor count follows the budget at every level, pathfinder256 keeps the
default padding of 22 px, and the paddle length of pathfinder64 and Path-X is the
default 5.

**Labels and markers, and where this differs from the original.** Marker distance
must not tell the label, which the original does not guarantee (its label-0 markers
are the start of one target snake and the end of the other, which starts
`seed_distance` away: farther apart on average). Here target snake B is grown first,
from B0 to B1; target snake A starts at the pixel A0 nearest to a point
`seed_distance` from B0 and `|B1 - B0|` from B1 (B0 turned about B1 either way).
Label 1 marks B0 and B1, label 0 marks A0 and B1: the two marker pairs are equally
far apart (up to rounding), the picture without markers is the same for both labels,
and in both the near marker has the other target snake's end `seed_distance` away,
as in the original. So B is grown before A (the original grows both in turns), and
when A does not fit, A is tried again up to 16 times before B is drawn again (the
original draws both again; this is 2-3 times cheaper and only mildly favours B
shapes that leave A little room). Also fixed: A's seed is checked against the
occupancy (the original did not check the second seed), the last paddle of both
target snakes enters the occupancy (the original left out the first snake's), and a
seed's mask interior is tested where the paddle is drawn (the original's dilation
kernel sat one pixel off). Marker disks within a few pixels of the border are not
renormalized as Pillow's whole-image resize does.

**Speed.** Rejection is heavy (a 14-paddle snake fits in 4-35% of tries, depending on
the size), so `generate_snakes_batch` runs many images in lockstep: each image keeps
its own random stream and the sequential algorithm above, and only the numpy calls
are shared; a finished image leaves its slot to the next one. The sprites, masks and
sampling weights of every orientation are computed once per process.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np

# -- Pillow-compatible rasterization (line drawing and Lanczos resize) ------------------

_PRECISION_BITS = 22  # Pillow's fixed-point resampling of 8-bit images


def _sinc(x: np.ndarray) -> np.ndarray:
    out = np.ones_like(x)
    nz = x != 0
    out[nz] = np.sin(np.pi * x[nz]) / (np.pi * x[nz])
    return out


@functools.lru_cache(maxsize=16)
def _lanczos_matrix(n_in: int, n_out: int) -> np.ndarray:
    """Pillow's fixed-point Lanczos-3 resampling weights `(n_out, n_in)` (int64).

    Output pixel `i` is centred on input coordinate `(i + 0.5) n_in / n_out`; the
    kernel is stretched by the scale when shrinking, truncated at the image border
    and renormalized, then rounded to 22-bit fixed point.
    """
    scale = n_in / n_out
    fscale = max(scale, 1.0)
    support = 3.0 * fscale
    out = np.zeros((n_out, n_in), np.int64)
    one = float(1 << _PRECISION_BITS)
    for i in range(n_out):
        center = (i + 0.5) * scale
        lo = max(int(center - support + 0.5), 0)
        hi = min(int(center + support + 0.5), n_in)
        t = (np.arange(lo, hi) - center + 0.5) / fscale
        w = np.where((t >= -3.0) & (t < 3.0), _sinc(t) * _sinc(t / 3.0), 0.0)
        if w.sum() != 0.0:
            w = w / w.sum()
        out[i, lo:hi] = np.trunc(np.where(w < 0, w * one - 0.5, w * one + 0.5)).astype(np.int64)
    return out


def _resize_u8(a: np.ndarray, n_out: int) -> np.ndarray:
    """Lanczos-resize a square uint8 image to `n_out x n_out` exactly as Pillow does
    (horizontal pass, clip to 8 bits, vertical pass, clip)."""
    k = _lanczos_matrix(a.shape[0], n_out)
    half = 1 << (_PRECISION_BITS - 1)
    x = a.astype(np.int64)
    x = np.clip((x @ k.T + half) >> _PRECISION_BITS, 0, 255)
    x = np.clip((k @ x + half) >> _PRECISION_BITS, 0, 255)
    return x.astype(np.uint8)


def _f32(v):
    return np.float32(v)


def _round_up(f) -> int:
    """Pillow's ROUND_UP (half away from zero)."""
    return int(math.floor(f + 0.5)) if f >= 0 else -int(math.floor(abs(f) + 0.5))


def _round_down(f) -> int:
    """Pillow's ROUND_DOWN (half towards zero)."""
    return int(math.ceil(f - 0.5)) if f >= 0 else -int(math.ceil(abs(f) - 0.5))


def _hline(img: np.ndarray, x0: int, y: int, x1: int):
    h, w = img.shape
    if 0 <= y < h:
        x0, x1 = min(x0, x1), max(x0, x1)
        if x0 >= w or x1 < 0:
            return
        img[y, max(x0, 0) : min(x1, w - 1) + 1] = True


def _bresenham(img: np.ndarray, x0: int, y0: int, x1: int, y1: int):
    """A one-pixel line, end points included (Pillow's `line32` plus its last point)."""
    h, w = img.shape
    dx, xs = abs(x1 - x0), (1 if x1 >= x0 else -1)
    dy, ys = abs(y1 - y0), (1 if y1 >= y0 else -1)
    pts = []
    x, y = x0, y0
    if dx == 0 or dy == 0:
        for _ in range(max(dx, dy)):
            pts.append((x, y))
            x, y = x + (xs if dy == 0 else 0), y + (ys if dx == 0 else 0)
    elif dx > dy:
        e = 2 * dy - dx
        for _ in range(dx):
            pts.append((x, y))
            if e >= 0:
                y, e = y + ys, e - 2 * dx
            e, x = e + 2 * dy, x + xs
    else:
        e = 2 * dx - dy
        for _ in range(dy):
            pts.append((x, y))
            if e >= 0:
                x, e = x + xs, e - 2 * dy
            e, y = e + 2 * dx, y + ys
    pts.append((x1, y1))
    for px, py in pts:
        if 0 <= px < w and 0 <= py < h:
            img[py, px] = True


def _wide_line(img: np.ndarray, x0: int, y0: int, x1: int, y1: int, width: int):
    """A line `width > 1` px wide: Pillow's rotated rectangle with integer corners,
    filled scan line by scan line (float32 edge arithmetic, as in Pillow's C code)."""
    dx, dy = x1 - x0, y1 - y0
    big = math.sqrt(dx * dx + dy * dy)
    small = (width - 1) / 2.0
    rmax, rmin = _round_up(small) / big, _round_down(small) / big
    dxmin, dxmax = _round_down(rmin * dy), _round_down(rmax * dy)
    dymin, dymax = _round_down(rmin * dx), _round_down(rmax * dx)
    v = [
        (x0 - dxmin, y0 + dymax),
        (x1 - dxmin, y1 + dymax),
        (x1 + dxmax, y1 - dymin),
        (x0 + dxmax, y0 - dymin),
    ]
    h = img.shape[0]
    edges, ymin, ymax = [], h - 1, 0
    for i in range(4):
        (ax, ay), (bx, by) = v[i], v[(i + 1) % 4]
        if ay == by:  # horizontal edges are drawn as they are
            _hline(img, min(ax, bx), ay, max(ax, bx))
            continue
        edges.append((min(ay, by), max(ay, by), ax, ay, _f32(_f32(bx - ax) / _f32(by - ay))))
        ymin, ymax = min(ymin, min(ay, by)), max(ymax, max(ay, by))
    ymin, ymax = max(ymin, 0), min(ymax, h)
    for y in range(ymin, ymax + 1):
        xx = []
        for e_lo, e_hi, ex, ey, edx in edges:
            if e_lo <= y <= e_hi:
                xx.append(_f32(_f32(y - ey) * edx + _f32(ex)))
            if y == e_hi and y < ymax:
                xx.append(xx[-1])
        xx.sort()
        for i in range(1, len(xx), 2):
            lo = _f32(xx[i - 1])
            hi = _f32(xx[i])
            left = int(np.floor(lo + _f32(0.5))) if lo >= 0 else -int(np.floor(abs(lo) + _f32(0.5)))
            right = int(np.ceil(hi - _f32(0.5))) if hi >= 0 else -int(np.ceil(abs(hi) - _f32(0.5)))
            _hline(img, left, y, right)


def _disk(radius: float) -> np.ndarray:
    """Integer offsets `(n, 2)` of the disk `dy**2 + dx**2 <= radius**2`."""
    r = int(math.floor(radius))
    dy, dx = np.mgrid[-r : r + 1, -r : r + 1]
    inside = dy * dy + dx * dx <= radius * radius
    return np.stack([dy[inside], dx[inside]], axis=1)


def _dilate_disk(img: np.ndarray, radius: float) -> np.ndarray:
    """Binary dilation of `img` (bool) by the disk `dy**2 + dx**2 <= radius**2`
    (pixels outside the image do not count, like OpenCV's default border)."""
    pts = np.argwhere(img)
    n = img.shape[0]
    y = np.arange(n)
    d2 = (y[:, None, None] - pts[None, None, :, 0]) ** 2 + (y[None, :, None] - pts[None, None, :, 1]) ** 2
    return (d2 <= radius * radius).any(-1)


def _paddle_sprites(length: int, thickness: float, margin: int, aa: int, theta: float):
    """The stroke and its occupancy mask (both uint8, `(2R+1)^2` centred on the
    stroke's start, `R = length + ceil(thickness) + margin`) for one orientation,
    plus the stroke's end relative to its start (output pixels)."""
    R = length + int(math.ceil(thickness)) + margin
    n_fine = 2 * R * aa + 1
    c = R * aa
    # The fine end point is rounded up, as the original's translate_coord does.
    hy = int(math.ceil(c + length * aa * np.sin(theta)))
    hx = int(math.ceil(c + length * aa * np.cos(theta)))
    fine = np.zeros((n_fine, n_fine), bool)
    width = int(round(thickness * aa))
    if width <= 1:
        _bresenham(fine, c, c, hx, hy)
    else:
        _wide_line(fine, c, c, hx, hy, width)
    dilated = _dilate_disk(fine, float(margin * aa))
    line = _resize_u8(fine.astype(np.uint8) * 255, 2 * R + 1)
    mask = _resize_u8(dilated.astype(np.uint8) * 255, 2 * R + 1)
    scale = n_fine / (2 * R + 1)
    end = np.array([(hy - c) / scale, (hx - c) / scale])
    return line, mask, end


def _marker_sprite(radius: float, aa: int) -> np.ndarray:
    """The marker disk as the original draws it (a disk of radius `radius * aa`
    centred on fine pixel `(p * aa, p * aa)`, Lanczos-shrunk by `aa`), uint8, centred
    on the marked pixel `p`, half-size `ceil(radius) + 3`."""
    Rm = int(math.ceil(radius)) + 3
    # Enough output pixels around the marker that the kept ones see the whole kernel.
    n = 2 * (Rm + 3) + 1
    c = (Rm + 3) * aa
    y, x = np.ogrid[-c : n * aa - c, -c : n * aa - c]
    fine = ((x * x + y * y) <= (radius * aa) ** 2).astype(np.uint8) * 255
    out = _resize_u8(fine, n)
    return out[3 : n - 3, 3 : n - 3]


# -- configuration --------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SnakesConfig:
    """One Pathfinder level of the snakes generator as LRA ran it (`style="lra"`).

    Lengths in output pixels. See the module docstring for the algorithm.

    **Arguments:**

    - `size`: image side (sequence length `size**2`).
    - `seed_distance`: the second target snake starts this far from the first; the
      first starts (its mask interior) at least twice this far inside the border.
    - `marker_radius`: radius of the two circular markers.
    - `paddle_length`, `paddle_thickness`: one paddle's length and width
      (`paddle_thickness * antialias_scale` must be a whole number).
    - `continuity`: turn `t` between paddles has weight
      `max(cos(min(continuity * t, pi/2)), 0)**2`.
    - `paddle_margins`: the margin (gap and occupancy dilation) is drawn from these
      once per image.
    - `padding`: width of the occupied ring at the border.
    - `snake_contrast`, `paddle_contrast`: target paddles have intensity
      `paddle_contrast * snake_contrast`, distractors `snake_contrast`, markers 1,
      before each image is scaled to a maximum of 255.
    - `distractor_budget`: `distractor_budget // distractor_length` distractors.
    - `contour_length`: paddles per target snake (6, 9 or 14; LRA uses 14).
    - `antialias_scale`: the strokes are drawn at this resolution and shrunk.
    - `max_paddle_retrial`: extra tries per paddle (and per seed placement).
    - `max_distractor_retrial`: extra tries per distractor snake.
    """

    size: int
    seed_distance: int
    marker_radius: float
    paddle_length: int
    paddle_thickness: float
    continuity: float
    paddle_margins: tuple[int, ...]
    padding: int
    snake_contrast: float
    paddle_contrast: float
    distractor_budget: int
    contour_length: int = 14
    antialias_scale: int = 2
    max_paddle_retrial: int = 2
    max_distractor_retrial: int = 4

    def __post_init__(self):
        object.__setattr__(self, "paddle_margins", tuple(int(m) for m in self.paddle_margins))
        if self.contour_length < 3:
            raise ValueError(f"expected contour_length >= 3, got {self.contour_length}")
        if not self.paddle_margins or min(self.paddle_margins) < 1:
            raise ValueError(f"expected paddle_margins of integers >= 1, got {self.paddle_margins}")
        if self.padding < 1:
            raise ValueError(f"expected padding >= 1, got {self.padding}")
        width = self.paddle_thickness * self.antialias_scale
        if width < 1 or width != round(width):
            raise ValueError(
                f"expected paddle_thickness * antialias_scale to be a whole number >= 1, got "
                f"{self.paddle_thickness} * {self.antialias_scale}"
            )
        if 4 * self.seed_distance >= self.size:
            raise ValueError(
                f"expected seed_distance < size / 4, got {self.seed_distance} (size {self.size})"
            )

    @property
    def style(self) -> str:
        return "lra"

    @property
    def distractor_length(self) -> int:
        """Paddles per distractor snake: `contour_length // 3`."""
        return self.contour_length // 3

    @property
    def num_distractors(self) -> int:
        """Distractor snakes per image: `distractor_budget // distractor_length`."""
        return self.distractor_budget // self.distractor_length

    @property
    def seq_len(self) -> int:
        return self.size * self.size


# fmt: off
_SNAKES_TABLE = {
    #               size  seed  marker  length  thick  contin.  margins  padding  snake_c  paddle_c  budget
    "pathfinder32":  (32,   7,    1.5,    2,      0.5,   1.0,     (1,),    1,       2.0,     0.75,     20),
    "pathfinder64":  (64,   12,   2.5,    5,      1.0,   1.8,     (1,),    1,       0.8,     1.0,      22),
    "pathx":         (128,  20,   3.0,    5,      1.5,   1.8,     (2, 3),  1,       0.9,     1.0,      35),
    "pathfinder256": (256,  27,   5.0,    5,      2.0,   1.8,     (3,),    22,      1.0,     1.0,      30),
}
# fmt: on
SNAKES_PRESETS: dict[str, SnakesConfig] = {name: SnakesConfig(*row) for name, row in _SNAKES_TABLE.items()}


# -- precomputed geometry per (config, margin) ------------------------------------------

_SEED_DEGREES = np.arange(-180, 180)  # seed orientations: whole degrees
_NSEED = len(_SEED_DEGREES)
# Occupancy is kept as uint8 (the original's float values times 255).
_FREE = 76  # a seed may cover occupancy <= 0.3 (76.5 / 255)
_CLASH = 459  # a paddle is refused where occupancy + its mask >= 1.8 (459 / 255)
_PROBES = 16  # random points tried at once when seeding a distractor


def _pad_rows(rows: list[np.ndarray]) -> np.ndarray:
    """Stack ragged 1-D arrays into one 2-D array, padding each row with its first
    entry (a repeated offset changes no maximum and no "any")."""
    n = max(len(r) for r in rows)
    return np.stack([np.concatenate([r, np.full(n - len(r), r[0], r.dtype)]) for r in rows])


def _max_filter(a: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """`out[q] = max(a[q + o] for o in offsets)`, `a` zero-padded by the offsets' reach
    (so `out` is larger than `a` by that much on every side)."""
    r = int(np.abs(offsets).max())
    n = a.shape[0]
    padded = np.zeros((n + 4 * r, n + 4 * r), a.dtype)
    padded[2 * r : 2 * r + n, 2 * r : 2 * r + n] = a
    out = np.zeros((n + 2 * r, n + 2 * r), a.dtype)
    for dy, dx in offsets:
        np.maximum(out, padded[r + dy : r + dy + n + 2 * r, r + dx : r + dx + n + 2 * r], out=out)
    return out


class _Kit:
    """Every sprite, offset and weight one (geometry, margin) needs, computed once.

    Sprite ids: `0..359` seed paddles (orientation `id - 180` degrees, drawn from
    their start), `360 + k` extension paddle `k` (far end at offset `D[k]` from its
    pivot, drawn back towards the pivot).
    """

    def __init__(self, length, thickness, margin, aa, continuity, marker_radius):
        L, m = length, margin
        self.R = R = L + int(math.ceil(thickness)) + m
        self.m = m
        # Extension candidates: points on the circle of radius L + m around the pivot,
        # one per pixel of arc, rounded down (as `astype(int)` of in-image points),
        # duplicates removed.
        r = L + m
        rad = np.arange(0, 360, 360.0 / (2 * r * np.pi)) * np.pi / 180
        pts = np.stack([np.floor(r * np.sin(rad)), np.floor(r * np.cos(rad))], 1).astype(np.int64)
        D = np.unique(pts, axis=0)
        phi = np.arctan2(D[:, 0], D[:, 1])
        self.D, self.K = D, len(D)
        theta = _SEED_DEGREES * np.pi / 180
        orient = np.concatenate([theta, phi])
        self.orient = orient
        # Weights of the candidates given the last orientation (rows: its sprite id).
        delta = np.abs(phi[None, :] - orient[:, None])
        delta = np.minimum(delta, 2 * np.pi - delta)
        self.weights = np.maximum(np.cos(np.minimum(delta * continuity, 0.5 * np.pi)), 0.0) ** 2
        # Sprites: seeds drawn from their start along theta, extensions from their far
        # end back towards the pivot (the original flips the orientation by pi).
        draw = np.concatenate([theta, np.where(phi < 0, phi + np.pi, phi - np.pi)])
        lines, masks, ends = zip(*(_paddle_sprites(L, thickness, m, aa, t) for t in draw), strict=True)
        self.lines = np.stack(lines).astype(np.float64) / 255.0
        self.mask_u8 = np.stack(masks)
        self.ends = np.stack(ends)  # stroke end - stroke start (output pixels)
        # Occupancy dilated by the margin: what the candidates are weighted with.
        self.disk = disk = _disk(float(m))
        self.dmask_u8 = np.stack([_max_filter(mk, disk) for mk in self.mask_u8])
        # Only pixels where a mask is >= 0.8 can reach the 1.8 limit (occupancy <= 1).
        crit = [np.argwhere(mk >= _CLASH - 255) - R for mk in self.mask_u8]
        self.crit_rc = crit
        self.crit_v = _pad_rows(
            [mk[c[:, 0] + R, c[:, 1] + R].astype(np.int16) for mk, c in zip(masks, crit, strict=True)]
        )
        # Where a seed may go: its mask interior (pixels at 255) on occupancy <= 0.3.
        self.footprints = [np.argwhere(mk == 255) - R for mk in self.mask_u8[:_NSEED]]
        if min(len(f) for f in self.footprints) == 0:  # pragma: no cover - thin strokes only
            raise ValueError("a paddle's occupancy mask never reaches 255: too thin for the generator")
        self.boxes = np.array(
            [(f[:, 0].min(), f[:, 0].max(), f[:, 1].min(), f[:, 1].max()) for f in self.footprints]
        )
        marker = _marker_sprite(marker_radius, aa)
        self.marker = marker.astype(np.float64) / 255.0
        self.Rm = (marker.shape[0] - 1) // 2
        self._flat: dict[int, tuple] = {}

    def flat(self, width: int):
        """Flat offsets on a canvas `width` wide (cached): the candidates, the critical
        pixels, the seed footprints, the marker patch, and the nonzero pixels (offsets
        and values) of every mask and dilated mask."""
        if width not in self._flat:
            R, m, Rm = self.R, self.m, self.Rm

            def above(sprites, h, floor):
                offs, vals = [], []
                for sp in sprites:
                    rc = np.argwhere(sp > floor) - h
                    offs.append(rc[:, 0] * width + rc[:, 1])
                    vals.append(sp[sp > floor])
                return _pad_rows(offs), _pad_rows(vals)

            dy, dx = np.mgrid[-Rm : Rm + 1, -Rm : Rm + 1]
            self._flat[width] = (
                self.D[:, 0] * width + self.D[:, 1],
                _pad_rows([c[:, 0] * width + c[:, 1] for c in self.crit_rc]),
                _pad_rows([f[:, 0] * width + f[:, 1] for f in self.footprints]),
                (dy * width + dx).reshape(-1),
                # Occupancy <= 0.3 counts as free and only >= 0.8 can clash: a mask's
                # pixels <= 76 change nothing. The dilated masks weight candidates: all.
                above(self.mask_u8, R, _FREE),
                above(self.dmask_u8, R + m, 0),
            )
        return self._flat[width]


@functools.lru_cache(maxsize=32)
def _kit(length, thickness, margin, aa, continuity, marker_radius) -> _Kit:
    return _Kit(length, thickness, margin, aa, continuity, marker_radius)


def snakes_kit(cfg: SnakesConfig, margin: int) -> _Kit:
    """The precomputed sprites and tables of `cfg` at one margin (cached per process)."""
    return _kit(
        cfg.paddle_length,
        cfg.paddle_thickness,
        margin,
        cfg.antialias_scale,
        cfg.continuity,
        cfg.marker_radius,
    )


class _Tables:
    """The tables of every margin of a config merged for one canvas width: margin
    `g`'s sprite ids start at `base[g]` (its seeds, then its extensions); candidate
    tables are padded to the largest count with zero-weight entries."""

    def __init__(self, cfg: SnakesConfig, width: int):
        kits = [snakes_kit(cfg, m) for m in cfg.paddle_margins]
        self.kits = kits
        flats = [k.flat(width) for k in kits]
        ns = [len(k.mask_u8) for k in kits]
        self.base = np.cumsum([0] + ns[:-1]).astype(np.int64)
        self.ext_base = self.base + _NSEED
        self.K = np.array([k.K for k in kits], np.int64)
        Kmax = int(self.K.max())
        self.R = max(k.R for k in kits)
        self.m = max(k.m for k in kits)
        self.Rm = kits[0].Rm
        self.marker = kits[0].marker

        def pad_cols(rows):  # rows of different widths: repeat each row's first entry
            n = max(r.shape[1] for r in rows)
            return np.concatenate(
                [np.concatenate([r, np.repeat(r[:, :1], n - r.shape[1], 1)], 1) for r in rows]
            )

        # Candidates per margin (G, Kmax): flat offset and (row, col) offset.
        self.DF = np.stack([np.pad(f[0], (0, Kmax - len(f[0]))) for f in flats])
        self.Dr = np.stack([np.pad(k.D[:, 0], (0, Kmax - k.K)) for k in kits])
        self.Dc = np.stack([np.pad(k.D[:, 1], (0, Kmax - k.K)) for k in kits])
        # Per sprite (merged ids).
        self.sin = np.sin(np.concatenate([k.orient for k in kits]))
        self.cos = np.cos(np.concatenate([k.orient for k in kits]))
        self.margin = np.array([k.m for k in kits], np.int64)
        self.weights = np.concatenate([np.pad(k.weights, ((0, 0), (0, Kmax - k.K))) for k in kits])
        self.orient = np.concatenate([k.orient for k in kits])
        self.ends = np.concatenate([k.ends for k in kits])
        self.CRIT = pad_cols([f[1] for f in flats])
        self.crit_v = pad_cols([k.crit_v for k in kits])
        self.crit_u8 = self.crit_v.astype(np.uint8)
        self.M_OFF = pad_cols([f[4][0] for f in flats])
        self.M_VAL = pad_cols([f[4][1] for f in flats])
        self.DM_OFF = pad_cols([f[5][0] for f in flats])
        self.DM_VAL = pad_cols([f[5][1] for f in flats])
        fp = pad_cols([f[2] for f in flats])  # seeds only: (G * 360, F)
        self.FP = np.zeros((sum(ns), fp.shape[1]), np.int64)
        for g in range(len(kits)):
            self.FP[self.base[g] : self.base[g] + _NSEED] = fp[g * _NSEED : (g + 1) * _NSEED]
        self.MPATCH = flats[0][3]
        # Seeds per margin (G, 360, ...).
        # A seed's orientation and its reverse (the original adds or subtracts pi).
        theta = _SEED_DEGREES * np.pi / 180
        back = np.where(theta + np.pi < np.pi, theta + np.pi, theta - np.pi)
        self.seed_sin, self.seed_cos = np.sin(theta), np.cos(theta)
        self.back_sin, self.back_cos = np.sin(back), np.cos(back)
        self.boxes = np.stack([k.boxes for k in kits])
        # Strokes: their nonzero pixels, as (row, col) offsets and values (0..1).
        offs, vals = [], []
        for k in kits:
            for line in k.lines:
                rc = np.argwhere(line > 0)
                offs.append(rc - k.R)
                vals.append(line[line > 0])
        self.line_rc = offs
        self.line_val = _pad_rows(vals)
        self._line_offsets: dict[int, np.ndarray] = {}

    def line_offsets(self, width: int) -> np.ndarray:
        """Flat offsets of each stroke's nonzero pixels on a canvas `width` wide."""
        if width not in self._line_offsets:
            self._line_offsets[width] = _pad_rows([rc[:, 0] * width + rc[:, 1] for rc in self.line_rc])
        return self._line_offsets[width]


@functools.lru_cache(maxsize=8)
def _tables(cfg: SnakesConfig, width: int) -> _Tables:
    return _Tables(cfg, width)


# -- the generator: a batch of images grown in lockstep ----------------------------------

_B, _A, _D, _DONE = 0, 1, 2, 3  # phase of an image: target snake B, target A, distractors, done
# Starts of A (each with up to three seed orientations) before B is drawn again. The
# original draws both again after any failure; keeping B for a few tries of A costs far
# less (A fits in 3% to 30% of tries) and only mildly favours B shapes that leave A
# little room.
_A_TRIES = 16
_MAX_RESTARTS = 200_000  # tries of target B per image before giving up (about 30 are usual)


class _Engine:
    """Grow the snakes of many images in lockstep, a fixed number at a time.

    Each image runs the sequential algorithm of the module docstring; the images only
    share numpy calls. A slot holds one image; one snake ("job") per image is under
    way at a time: its seed is tried once per round, then it gets one paddle per
    round. The job's paddles go into a scratch occupancy until the snake is complete
    (then into the image's occupancy) or stuck (then they are wiped). A finished image
    leaves its slot to the next one. Every random number an image uses comes from its
    own stream, in an order fixed by its own history: an image does not depend on the
    others.
    """

    # Columns of a paddle record: sprite id, stroke start (row, col), pivot (row, col).
    SID, ROW, COL, PROW, PCOL = range(5)

    def __init__(self, cfg: SnakesConfig, slots: int):
        self.cfg = cfg
        N = slots
        L, m = cfg.paddle_length, max(cfg.paddle_margins)
        R = cfg.paddle_length + int(math.ceil(cfg.paddle_thickness)) + m
        Rm = int(math.ceil(cfg.marker_radius)) + 3
        # Pivots may lie outside the image, and the candidates around them reach about
        # 3L + 5m beyond it; sprites and their dilations reach R + m.
        self.P = P = max(R + m, Rm, 3 * L + 5 * m + 2) + 2
        self.H = H = cfg.size
        self.Wp = Wp = H + 2 * P
        self.t = t = _tables(cfg, Wp)
        self.single = len(t.kits) == 1  # one margin: candidate tables need no gather
        s = cfg.seed_distance
        if not (
            (2 * s - t.boxes[..., 0] <= H - 2 * s - 1 - t.boxes[..., 1])
            & (2 * s - t.boxes[..., 2] <= H - 2 * s - 1 - t.boxes[..., 3])
        ).any():
            raise ValueError(
                f"no first target seed fits {2 * s} px (2 seed_distance) inside a {H} px image: "
                f"expected a smaller seed_distance or paddle"
            )
        self.off = np.arange(N, dtype=np.int64) * (Wp * Wp)
        ring = np.zeros((Wp, Wp), np.uint8)
        ring[P : P + H, P : P + H] = 255
        p = cfg.padding
        ring[P + p : P + H - p, P + p : P + H - p] = 0
        # The dilated occupancy counts everything outside the image as taken: the
        # original drops candidates outside the image.
        dbase = np.full((len(t.kits), Wp, Wp), 255, np.uint8)
        for g, kit in enumerate(t.kits):
            mg = kit.m
            dring = _max_filter(ring[P - mg : P + H + mg, P - mg : P + H + mg], kit.disk)
            dbase[g, P : P + H, P : P + H] = dring[2 * mg : 2 * mg + H, 2 * mg : 2 * mg + H]
        self.base_m, self.base_d = ring, dbase
        self.cm = np.repeat(ring[None], N, 0)  # occupancy of finished snakes
        self.cd = np.repeat(dbase[:1], N, 0)  # ... dilated by the margin
        self.sm = np.zeros((N, Wp, Wp), np.uint8)  # the current snake's paddles
        self.sd = np.zeros((N, Wp, Wp), np.uint8)
        self.cmf, self.cdf = self.cm.reshape(-1), self.cd.reshape(-1)
        self.smf, self.sdf = self.sm.reshape(-1), self.sd.reshape(-1)
        # Random numbers: a block per slot, refilled from its image's stream.
        self.rngs: list = [None] * N
        self.U = np.zeros((N, _UNIFORM_BLOCK))
        self.Uf = self.U.reshape(-1)
        self.ptr = np.zeros(N, np.int64)
        # Slot state: the image it holds (-1: none), its margin, where it stands.
        self.image = np.full(N, -1, np.int64)
        self.gi = np.zeros(N, np.int64)
        self.phase = np.full(N, _DONE, np.int64)
        self.a_tries = np.zeros(N, np.int64)
        self.d_index = np.zeros(N, np.int64)
        self.d_tries = np.zeros(N, np.int64)
        self.cand = np.zeros((N, 2), np.int64)
        self.b0 = np.zeros((N, 2), np.int64)
        self.b1 = np.zeros((N, 2), np.int64)
        # The paddles of the image's finished snakes, and whether each is a distractor's.
        n_strokes = 2 * cfg.contour_length + cfg.num_distractors * cfg.distractor_length
        self.count = np.zeros(N, np.int64)
        self.buf = np.zeros((N, n_strokes, 5), np.int64)
        self.buf_d = np.zeros((N, n_strokes), bool)
        # Job state: the snake under way in each slot, its paddles and their flat
        # canvas positions.
        n_max = cfg.contour_length
        self.seeding = np.ones(N, bool)
        self.trials = np.zeros(N, np.int64)
        self.restarts = np.zeros(N, np.int64)  # of target B, per image
        self.jlen = np.zeros(N, np.int64)
        self.jdone = np.zeros(N, np.int64)
        self.status = np.zeros(N, np.int64)  # 0 under way, 1 complete, -1 stuck
        self.pr = np.zeros(N, np.int64)
        self.pc = np.zeros(N, np.int64)
        self.last = np.zeros(N, np.int64)
        self.job = np.zeros((N, n_max, 5), np.int64)
        self.jpos = np.zeros((N, n_max), np.int64)

    def load(self, slot: int, image: int, margin_index: int, rng, uniforms: np.ndarray, used: int):
        """Put image `image` (its margin, its stream `rng` and a block of its uniforms
        of which `used` are spent) into `slot`, with an empty canvas."""
        self.image[slot] = image
        self.gi[slot] = margin_index
        self.rngs[slot] = rng
        self.U[slot] = uniforms
        self.ptr[slot] = used
        self.cm[slot] = self.base_m
        self.cd[slot] = self.base_d[margin_index]
        self.count[slot] = 0
        self.restarts[slot] = 0
        self._start(np.array([slot]), _B)

    # -- random numbers ------------------------------------------------------------------
    def draw(self, ids: np.ndarray, n: int) -> np.ndarray:
        """`n` uniforms for each image in `ids`, `(len(ids), n)`."""
        width = self.U.shape[1]
        ptr = self.ptr[ids]
        if ptr.max() + n > width:
            for j in np.flatnonzero(ptr + n > width):
                i = ids[j]
                self.U[i] = self.rngs[i].random(width)
                ptr[j] = 0
        self.ptr[ids] = ptr + n
        return self.Uf[(ids * width + ptr)[:, None] + np.arange(n)]

    # -- seeds ---------------------------------------------------------------------------
    def _seed_geometry(self, ids, deg, r, c):
        """A seed's far end and pivot, as the original computes them: the start moved
        `L` along the orientation, then `L + margin` back, each rounded up from the
        absolute coordinate (so sums like `17 + 4e-16` round as they did there)."""
        t, L = self.t, self.cfg.paddle_length
        back = L + (t.margin[0] if self.single else t.margin[self.gi[ids]])
        hr = np.ceil(r + L * t.seed_sin[deg]).astype(np.int64)
        hc = np.ceil(c + L * t.seed_cos[deg]).astype(np.int64)
        pr = np.ceil(hr + back * t.back_sin[deg]).astype(np.int64)
        pc = np.ceil(hc + back * t.back_cos[deg]).astype(np.int64)
        H = self.H
        fits = (
            (np.minimum(hr, pr) >= 0)
            & (np.maximum(hr, pr) < H)
            & (np.minimum(hc, pc) >= 0)
            & (np.maximum(hc, pc) < H)
        )
        return pr, pc, fits

    def _seeded(self, ids, deg, r, c, pr, pc):
        """Record the seed paddles of `ids` (orientation `deg`, start `(r, c)`, pivot
        `(pr, pc)`)."""
        if not len(ids):
            return
        t = self.t
        sid = t.base[self.gi[ids]] + deg
        self.seeding[ids] = False
        self.jdone[ids] = 0
        self.job[ids, 0] = np.stack([sid, r, c, pr, pc], 1)
        self.jpos[ids, 0] = self.off[ids] + (r + self.P) * self.Wp + c + self.P
        self.last[ids] = sid
        self.pr[ids], self.pc[ids] = pr, pc
        self.status[ids[self.jlen[ids] == 0]] = 1

    def _retry_or_fail(self, ids, ok):
        """Seeds of `ids[~ok]` failed a try: after `max_paddle_retrial + 1` tries the
        snake is stuck."""
        bad = ids[~ok]
        if len(bad):
            self.trials[bad] += 1
            self.status[bad[self.trials[bad] > self.cfg.max_paddle_retrial]] = -1

    def _degrees(self, u):
        return np.minimum((u * _NSEED).astype(np.int64), _NSEED - 1)

    def seed_first(self, ids):
        """Target B: a whole-degree orientation and a point where the seed's mask
        interior lies `2 seed_distance` inside the border (tried until one fits)."""
        H, s = self.H, self.cfg.seed_distance
        u = self.draw(ids, 3)
        deg = self._degrees(u[:, 0])
        box = self.t.boxes[self.gi[ids], deg]
        lo_r, hi_r = 2 * s - box[:, 0], H - 2 * s - 1 - box[:, 1]
        lo_c, hi_c = 2 * s - box[:, 2], H - 2 * s - 1 - box[:, 3]
        room = (lo_r <= hi_r) & (lo_c <= hi_c)
        r = lo_r + (u[:, 1] * np.maximum(hi_r - lo_r + 1, 1)).astype(np.int64)
        c = lo_c + (u[:, 2] * np.maximum(hi_c - lo_c + 1, 1)).astype(np.int64)
        pr, pc, fits = self._seed_geometry(ids, deg, r, c)
        ok = room & fits
        self._seeded(ids[ok], deg[ok], r[ok], c[ok], pr[ok], pc[ok])

    def _free(self, ids, deg, r, c):
        """Whether seed `deg` at `(r, c)` (shape `(G,)` or `(G, n)`) covers occupancy
        <= 0.3 only."""
        extra = (1,) * (r.ndim - 1)
        base = self.off[ids].reshape((-1,) + extra) + (r + self.P) * self.Wp + c + self.P
        fp = self.t.FP[self.t.base[self.gi[ids]] + deg].reshape((len(ids),) + extra + (-1,))
        return self.cmf[base[..., None] + fp].max(-1) <= _FREE

    def seed_second(self, ids):
        """Target A: a random orientation at the start point chosen for this try."""
        u = self.draw(ids, 1)
        deg = self._degrees(u[:, 0])
        r, c = self.cand[ids, 0], self.cand[ids, 1]
        pr, pc, fits = self._seed_geometry(ids, deg, r, c)
        ok = fits & self._free(ids, deg, r, c)
        self._seeded(ids[ok], deg[ok], r[ok], c[ok], pr[ok], pc[ok])
        self._retry_or_fail(ids, ok)

    def seed_distractor(self, ids):
        """A distractor: a random orientation at a uniform point where it fits
        (rejection sampling over `_PROBES` points, then the exact set)."""
        H = self.H
        u = self.draw(ids, 1 + 2 * _PROBES)
        deg = self._degrees(u[:, 0])
        rows = (u[:, 1 : 1 + _PROBES] * H).astype(np.int64)
        cols = (u[:, 1 + _PROBES :] * H).astype(np.int64)
        free = self._free(ids, deg, rows, cols)
        found = free.any(1)
        first = free.argmax(1)
        g = np.arange(len(ids))
        r, c = rows[g, first], cols[g, first]
        for j in np.flatnonzero(~found):
            at = self._exact_point(int(ids[j]), int(deg[j]))
            if at is None:  # nowhere to go: the snake fails at once
                self.status[ids[j]] = -1
            else:
                r[j], c[j] = at
                found[j] = True
        pr, pc, fits = self._seed_geometry(ids, deg, r, c)
        ok = found & fits
        self._seeded(ids[ok], deg[ok], r[ok], c[ok], pr[ok], pc[ok])
        self._retry_or_fail(ids[found], ok[found])

    def _exact_point(self, i: int, deg: int):
        H, P = self.H, self.P
        busy = self.cm[i] > _FREE
        blocked = np.zeros((H, H), bool)
        for dy, dx in self.t.kits[self.gi[i]].footprints[deg]:
            blocked |= busy[P + dy : P + dy + H, P + dx : P + dx + H]
        free = np.flatnonzero(~blocked)
        if not len(free):
            return None
        u = float(self.draw(np.array([i]), 1)[0, 0])
        k = int(free[min(int(u * len(free)), len(free) - 1)])
        return k // H, k % H

    # -- paddles -------------------------------------------------------------------------
    def extend(self, ids):
        """One more paddle for each snake in `ids`: weight the candidates around the
        next pivot, draw up to three, keep the first that fits."""
        t, P, Wp = self.t, self.P, self.Wp
        G = len(ids)
        last = self.last[ids]
        if self.single:
            margin, DF, Kg, ext_base = t.margin[0], t.DF[0], t.K[0], t.ext_base[0]
        else:
            g = self.gi[ids]
            margin, DF, Kg, ext_base = t.margin[g], t.DF[g], t.K[g][:, None], t.ext_base[g]
        # The next pivot: the last one moved L + 2 margin along the last orientation,
        # rounded up from the absolute coordinate (as the original does).
        step = self.cfg.paddle_length + 2 * margin
        pr = np.ceil(self.pr[ids] + step * t.sin[last]).astype(np.int64)
        pc = np.ceil(self.pc[ids] + step * t.cos[last]).astype(np.int64)
        pb = self.off[ids] + (pr + P) * Wp + pc + P
        q = pb[:, None] + DF
        dil = np.maximum(self.cdf[q], self.sdf[q])
        w = (255.0 - dil) * t.weights[last]  # (1 - dilated occupancy) * continuity weight
        cum = np.cumsum(w, axis=1)
        total = cum[:, -1]
        alive = total >= 1e-4 * 255
        # Inverse-CDF draws for all rows at once: rows offset so that they sort in order.
        K = w.shape[1]
        shift = np.arange(G)[:, None] * (256.0 * K)
        u = self.draw(ids, self.cfg.max_paddle_retrial + 1) * total[:, None] + shift
        k = np.searchsorted((cum + shift).reshape(-1), u.reshape(-1), side="right").reshape(u.shape)
        k = np.minimum(k - np.arange(G)[:, None] * K, Kg - 1)
        # Up to three draws; each is tested (against the limit of 1.8) only where the
        # ones before it failed.
        sid = ext_base + k if self.single else ext_base[:, None] + k
        head = pb[:, None] + (DF[k] if self.single else np.take_along_axis(DF, k, 1))
        fits = np.zeros(G, bool)
        choice = np.zeros(G, np.int64)
        todo = np.flatnonzero(alive)
        for j in range(k.shape[1]):
            if not len(todo):
                break
            sj = sid[todo, j]
            crit = head[todo, j][:, None] + t.CRIT[sj]
            occ = np.maximum(self.cmf[crit], self.smf[crit]).astype(np.int16) + t.crit_v[sj]
            ok = (occ < _CLASH).all(-1)
            hit = todo[ok]
            fits[hit] = True
            choice[hit] = j
            todo = todo[~ok]
        sel = np.flatnonzero(fits)
        a = ids[sel]
        pick = choice[sel]
        new_sid, new_pos = sid[sel, pick], head[sel, pick]
        # The previous paddle joins the occupancy of its snake.
        n = self.jdone[a]
        prev = self.jpos[a, n]
        old = last[sel]
        idx = prev[:, None] + t.CRIT[old]  # only mask pixels >= 0.8 matter here
        self.smf[idx] = np.maximum(self.smf[idx], t.crit_u8[old])
        idx = prev[:, None] + t.DM_OFF[old]
        self.sdf[idx] = np.maximum(self.sdf[idx], t.DM_VAL[old])
        n = n + 1
        local = new_pos - self.off[a]
        self.job[a, n] = np.stack([new_sid, local // Wp - P, local % Wp - P, pr[sel], pc[sel]], 1)
        self.jpos[a, n] = new_pos
        self.jdone[a] = n
        self.last[a] = new_sid
        self.pr[a], self.pc[a] = pr[sel], pc[sel]
        self.status[a[n == self.jlen[a]]] = 1
        self.status[ids[~fits]] = -1

    # -- bookkeeping ---------------------------------------------------------------------
    def _paddles(self, ids, counts):
        """The first `counts[i]` paddles of the current snake of each image in `ids`
        (flattened): their slots, indices, flat positions and sprite ids."""
        rows = np.repeat(ids, counts)
        j = np.arange(len(rows)) - np.repeat(np.cumsum(counts) - counts, counts)
        return rows, j, self.jpos[rows, j], self.job[rows, j, self.SID]

    def resolve(self):
        """Wipe the scratch of finished snakes, keep the complete ones, and start the
        next snake of each image."""
        done = np.flatnonzero(self.status)
        if not len(done):
            return
        t = self.t
        _, _, pos, sid = self._paddles(done, self.jdone[done])
        self.smf[pos[:, None] + t.CRIT[sid]] = 0
        self.sdf[pos[:, None] + t.DM_OFF[sid]] = 0
        ok = self.status[done] == 1
        self.status[done] = 0
        phase = self.phase[done]
        good = done[ok]
        if len(good):
            n = self.jlen[good] + 1
            rows, j, pos, sid = self._paddles(good, n)
            np.maximum.at(self.cmf, (pos[:, None] + t.M_OFF[sid]).reshape(-1), t.M_VAL[sid].reshape(-1))
            np.maximum.at(self.cdf, (pos[:, None] + t.DM_OFF[sid]).reshape(-1), t.DM_VAL[sid].reshape(-1))
            # Keep the snake's paddles in the image's record.
            at = self.count[rows] + j
            self.buf[rows, at] = self.job[rows, j]
            self.buf_d[rows, at] = self.phase[rows] == _D
            self.count[good] += n
        g_phase = phase[ok]
        b = good[g_phase == _B]
        if len(b):
            self.b0[b] = self.job[b, 0, 1:3]
            self.b1[b] = self.job[b, self.jlen[b], 1:3]
            self.a_tries[b] = 0
            self._start_second(b)
        a = good[g_phase == _A]
        if len(a):
            self.d_index[a] = 0
            self._start_distractor(a, again=False)
        d = good[g_phase == _D]
        if len(d):
            self.d_index[d] += 1
            self._start_distractor(d, again=False)
        bad = done[~ok]
        if not len(bad):
            return
        b_phase = phase[~ok]
        b = bad[b_phase == _B]
        if len(b):
            self.restarts[b] += 1
            if self.restarts[b].max() > _MAX_RESTARTS:
                raise RuntimeError(
                    f"no target snake of {self.cfg.contour_length} paddles fitted in {_MAX_RESTARTS} tries: "
                    f"expected a shorter contour_length or a larger image"
                )
            self._start(b, _B)
        a = bad[b_phase == _A]
        if len(a):
            self.a_tries[a] += 1
            self._start_second(a)
        d = bad[b_phase == _D]
        if len(d):
            self.d_tries[d] += 1
            over = self.d_tries[d] > self.cfg.max_distractor_retrial
            if over.any():
                self.d_index[d[over]] += 1
                self._start_distractor(d[over], again=False)
            if not over.all():
                self._start_distractor(d[~over], again=True)

    def _start(self, ids, phase):
        self.phase[ids] = phase
        self.seeding[ids] = True
        self.trials[ids] = 0
        self.jdone[ids] = 0
        n = self.cfg.contour_length if phase != _D else self.cfg.distractor_length
        self.jlen[ids] = n - 1

    def _restart(self, ids):
        """Start these images over (target B could not be followed by A)."""
        self.cm[ids] = self.base_m
        self.cd[ids] = self.base_d[self.gi[ids]]
        self.count[ids] = 0
        self._start(ids, _B)

    def _start_second(self, ids):
        """Target A starts `seed_distance` from B0 and `|B1 - B0|` from B1 (B0 turned
        about B1 one way or the other, by a fair coin), rounded to a pixel; a start
        outside the image counts as a failed try of A."""
        s, H = self.cfg.seed_distance, self.H
        while len(ids):
            left = self.a_tries[ids] < _A_TRIES
            if not left.all():
                self._restart(ids[~left])
                ids = ids[left]
                if not len(ids):
                    return
            b0, b1 = self.b0[ids], self.b1[ids]
            v = (b0 - b1).astype(np.float64)
            rho = np.hypot(v[:, 0], v[:, 1])
            possible = s <= 2 * rho
            if not possible.all():
                self._restart(ids[~possible])
                ids, v, rho, b1 = ids[possible], v[possible], rho[possible], b1[possible]
                if not len(ids):
                    return
            alpha = 2 * np.arcsin(s / (2 * rho))
            turn = np.where(self.draw(ids, 1)[:, 0] < 0.5, alpha, -alpha)
            cos, sin = np.cos(turn), np.sin(turn)
            r = np.round(b1[:, 0] + v[:, 0] * cos - v[:, 1] * sin).astype(np.int64)
            c = np.round(b1[:, 1] + v[:, 0] * sin + v[:, 1] * cos).astype(np.int64)
            inside = (r >= 0) & (r < H) & (c >= 0) & (c < H)
            go = ids[inside]
            self.cand[go, 0], self.cand[go, 1] = r[inside], c[inside]
            self._start(go, _A)
            ids = ids[~inside]
            self.a_tries[ids] += 1

    def _start_distractor(self, ids, again: bool):
        """The next distractor (`again`: the same one once more), unless all are drawn
        or under 1% of the image is free (then the image is done)."""
        if not again:
            self.d_tries[ids] = 0
            finished = self.d_index[ids] >= self.cfg.num_distractors
            self.phase[ids[finished]] = _DONE
            ids = ids[~finished]
            if len(ids):
                H, P = self.H, self.P
                free = np.count_nonzero(self.cm[ids, P : P + H, P : P + H] <= _FREE, axis=(1, 2))
                full = free < 0.01 * H * H
                self.phase[ids[full]] = _DONE
                ids = ids[~full]
        if len(ids):
            self._start(ids, _D)

    def run(self, queue: list, take, max_rounds: int = 100_000_000):
        """Generate every image of `queue` (argument tuples for `load`);
        `take(image, slot)` collects each finished one."""
        queue = list(reversed(queue))
        for slot in range(len(self.image)):
            if queue:
                self.load(slot, *queue.pop())
        for _ in range(max_rounds):
            active = self.phase != _DONE
            seeding = np.flatnonzero(active & self.seeding)
            if len(seeding):
                phase = self.phase[seeding]
                for p, op in ((_B, self.seed_first), (_A, self.seed_second), (_D, self.seed_distractor)):
                    ids = seeding[phase == p]
                    if len(ids):
                        op(ids)
            ids = np.flatnonzero(active & ~self.seeding & (self.status == 0))
            if len(ids):
                self.extend(ids)
            self.resolve()
            finished = np.flatnonzero((self.phase == _DONE) & (self.image >= 0))
            for slot in finished.tolist():
                take(int(self.image[slot]), slot)
                self.image[slot] = -1
                if queue:
                    self.load(slot, *queue.pop())
            if not queue and len(finished) and (self.image < 0).all():
                return
        raise RuntimeError("the Pathfinder generator did not finish")  # pragma: no cover

    # -- output --------------------------------------------------------------------------
    def strokes(self, slot: int):
        """The image's paddles (a copy, `(n, 5)`: sprite id, start row, col, pivot row,
        col) and whether each belongs to a distractor."""
        n = self.count[slot]
        return self.buf[slot, :n].copy(), self.buf_d[slot, :n].copy()

    def markers(self, slot: int, label: int) -> np.ndarray:
        """Near marker (B0 for label 1, A0 for label 0), then far marker B1."""
        near = self.b0[slot] if label == 1 else self.cand[slot]
        return np.stack([near, self.b1[slot]])


def _paddle_record(t: _Tables, paddles: np.ndarray) -> np.ndarray:
    """Paddles `(n, 7)`: pivot (row, col), orientation, stroke start (row, col),
    stroke end (row, col), from the engine's records (sprite id, start, pivot)."""
    sid, r, c, pr, pc = paddles.T
    ends = t.ends[sid]
    return np.stack([pr, pc, t.orient[sid], r, c, r + ends[:, 0], c + ends[:, 1]], 1).astype(np.float64)


def _compose(t: _Tables, cfg: SnakesConfig, strokes: list, markers: np.ndarray) -> np.ndarray:
    """Max-composite the paddles `[(records (n, 5), distractor flags)]` of each image
    and its two markers, then byte-scale each image to a maximum of 255."""
    n, size = len(strokes), cfg.size
    R, Rm = t.R, t.Rm
    P = max(R, Rm)
    Wp = size + 2 * P
    canvas = np.zeros(n * Wp * Wp)
    rows = np.concatenate([np.full(len(st[0]), i) for i, st in enumerate(strokes)])
    sid, rr, cc, _, _ = np.concatenate([st[0] for st in strokes]).T
    dis = np.concatenate([st[1] for st in strokes])
    intensity = np.where(dis, cfg.snake_contrast, cfg.snake_contrast * cfg.paddle_contrast)
    pos = rows * (Wp * Wp) + (rr + P) * Wp + cc + P
    np.maximum.at(
        canvas,
        (pos[:, None] + t.line_offsets(Wp)[sid]).reshape(-1),
        (t.line_val[sid] * intensity[:, None]).reshape(-1),
    )
    dy, dx = np.mgrid[-Rm : Rm + 1, -Rm : Rm + 1]
    mpatch = (dy * Wp + dx).reshape(-1)
    mpos = np.arange(n)[:, None] * (Wp * Wp) + (markers[..., 0] + P) * Wp + markers[..., 1] + P
    mvals = np.broadcast_to(t.marker.reshape(-1), (n, 2, t.marker.size))
    np.maximum.at(canvas, (mpos[..., None] + mpatch).reshape(-1), mvals.reshape(-1))
    img = canvas.reshape(n, Wp, Wp)[:, P : P + size, P : P + size]
    lo = img.min(axis=(1, 2), keepdims=True)
    hi = img.max(axis=(1, 2), keepdims=True)
    scale = 255.0 / np.where(hi > lo, hi - lo, 1.0)
    return (np.clip((img - lo) * scale, 0, 255) + 0.5).astype(np.uint8)


_UNIFORM_BLOCK = 512


def _default_slots(cfg: SnakesConfig, n: int) -> int:
    """Slots: enough to share numpy calls, few enough that a long queue keeps them
    busy (the last images to finish run nearly alone) and the canvases stay small."""
    by_memory = (1 << 24) // (4 * (cfg.size + 80) ** 2)
    return int(max(1, min(n, 256, by_memory, max(8, n // 4))))


def generate_snakes_batch(
    cfg: SnakesConfig, rngs: list, labels, *, record: bool = False, slots: int | None = None
):
    """Images of the snakes generator, one per random stream in `rngs`.

    Image `i` uses only `rngs[i]` and `labels[i]`: it is the same in any batch.

    **Returns:** `(images, markers, paddles)`: uint8 `(n, size, size)`, the marker
    points `(n, 2, 2)` (row, col; the near marker first, then the far one), and with
    `record=True` a list of each image's paddles `(k, 7)` float64 in drawing order,
    without snake ids: pivot (row, col), orientation (pivot towards the paddle's far
    end, radians), stroke start (row, col), stroke end (row, col); else None.
    """
    labels = [int(v) for v in labels]
    n = len(rngs)
    images = np.zeros((n, cfg.size, cfg.size), np.uint8)
    markers = np.zeros((n, 2, 2), np.int64)
    paddles = [None] * n if record else None
    if not n:
        return images, markers.astype(np.float64), paddles
    uniforms = [rng.random(_UNIFORM_BLOCK) for rng in rngs]
    margins = cfg.paddle_margins
    # The margin is drawn once per image: the first number of its stream.
    queue = [
        (i, min(int(u[0] * len(margins)), len(margins) - 1), rngs[i], u, 1) for i, u in enumerate(uniforms)
    ]
    engine = _Engine(cfg, slots or _default_slots(cfg, n))
    found: dict[int, tuple] = {}

    def take(i, slot):
        found[i] = (engine.strokes(slot), engine.markers(slot, labels[i]))

    engine.run(queue, take)
    for start in range(0, n, 64):  # composite in groups (memory)
        part = list(range(start, min(n, start + 64)))
        mk = np.stack([found[i][1] for i in part])
        images[part] = _compose(engine.t, cfg, [found[i][0] for i in part], mk)
        markers[part] = mk
    if record:
        for i in range(n):
            paddles[i] = _paddle_record(engine.t, found[i][0][0])
    return images, markers.astype(np.float64), paddles
