"""Pathfinder/Path-X generators: shapes, determinism, balance, and labels checked
independently of the generator's own bookkeeping.

- `continuous` style: the markers are connected by lit pixels exactly when the label
  is 1 (flood fill).
- `lra` style (dashed snakes, as LRA generated them): flood fill does not solve it.
  Instead the recorded paddles (no snake ids, shuffled) are linked into chains by
  the construction's geometry alone, the markers must sit on chain ends, and "same
  chain" must equal the label; every image must equal a re-rendering of its recorded
  paddles with Pillow's line drawing and Lanczos resize, as the original generator
  renders them.
"""

import hashlib
import json
import math
import pickle
from collections import deque

import numpy as np
import pytest
import scipy.ndimage as ndi

from seqkit import cli
from seqkit.data import (
    PATHFINDER_PRESETS,
    PathfinderCacheNotFoundError,
    PathfinderCacheSource,
    PathfinderConfig,
    PathfinderSource,
    SnakesConfig,
    generate_pathfinder,
    generate_pathfinder_batch,
    make_source,
    pathfinder_config,
    write_pathfinder,
)

EIGHT = np.ones((3, 3), bool)


def _bfs_component(mask, start):
    """Plain 8-connected breadth-first flood fill of `mask` from pixel `start`."""
    h, w = mask.shape
    seen = np.zeros_like(mask)
    if not mask[start]:
        return seen
    seen[start] = True
    queue = deque([start])
    while queue:
        r, c = queue.popleft()
        for dr in (-1, 0, 1):
            for dc in (-1, 0, 1):
                rr, cc = r + dr, c + dc
                if 0 <= rr < h and 0 <= cc < w and mask[rr, cc] and not seen[rr, cc]:
                    seen[rr, cc] = True
                    queue.append((rr, cc))
    return seen


def _connected(image, markers, threshold=0):
    comps, _ = ndi.label(image > threshold, structure=EIGHT)
    a, b = (tuple(int(v) for v in m) for m in markers)
    return comps[a] > 0 and comps[a] == comps[b]


# -- continuous style --------------------------------------------------------------------


def _check_connectivity(cfg, n, *, bfs=False):
    labels = []
    for i in range(n):
        ex = generate_pathfinder(cfg, 0, "train", i)
        lit = ex.image > 0
        centres = [(int(r), int(c)) for r, c in ex.markers]
        for rc in centres:
            # markers are drawn at full intensity
            assert ex.image[rc] == 255, (i, rc)
        if bfs:
            comp = _bfs_component(lit, centres[0])
            connected = bool(comp[centres[1]])
        else:
            comps, count = ndi.label(lit, structure=EIGHT)
            connected = comps[centres[0]] == comps[centres[1]]
            # the distractors and the other target snake are separate components
            assert count >= 3, (i, count)
        assert connected == (ex.label == 1), f"example {i}: label {ex.label}, connected {connected}"
        labels.append(ex.label)
    return np.array(labels)


def _continuous(preset, contour_length=14):
    return pathfinder_config(preset, contour_length, "continuous")


@pytest.mark.parametrize("style", ["lra", "continuous"])
@pytest.mark.parametrize("preset", sorted(PATHFINDER_PRESETS))
def test_data_pathfinder_shapes(preset, style):
    cfg = pathfinder_config(preset, style=style)
    assert cfg.style == style
    assert isinstance(cfg, SnakesConfig if style == "lra" else PathfinderConfig)
    ex = generate_pathfinder(cfg, 0, "train", 0)
    assert ex.image.shape == (cfg.size, cfg.size)
    assert ex.image.dtype == np.uint8
    assert ex.label in (0, 1)
    assert ex.markers.shape == (2, 2)
    assert ex.image.max() == 255 and ex.image.min() == 0
    if style == "lra":
        n = ex.paddles.shape[0]
        assert ex.paddles.shape == (n, 7) and n >= 2 * cfg.contour_length
    else:
        assert ex.paddles is None


def test_data_pathfinder_continuous_unchanged():
    """The continuous style is byte for byte the generator seqkit had before styles."""
    digest = hashlib.sha256()
    for preset, n in [("pathfinder32", 12), ("pathfinder64", 4), ("pathx", 2)]:
        for cl in (6, 14):
            for i in range(n):
                ex = generate_pathfinder(_continuous(preset, cl), 3, "val", i)
                digest.update(ex.image.tobytes() + bytes([ex.label]) + ex.markers.tobytes())
    assert digest.hexdigest() == "ef790cc3e3ca6395a5c2db9ef30abeae4e0806be039539bbf4a063df473431dc"


@pytest.mark.parametrize("style", ["lra", "continuous"])
def test_data_pathfinder_determinism(style):
    cfg = pathfinder_config("pathfinder32", 14, style)
    later = generate_pathfinder(cfg, 3, "val", 17)
    for i in range(5):  # generating others first changes nothing
        generate_pathfinder(cfg, 3, "val", i)
    again = generate_pathfinder(cfg, 3, "val", 17)
    assert later.image.tobytes() == again.image.tobytes() and later.label == again.label
    assert generate_pathfinder(cfg, 3, 1, 17).image.tobytes() == later.image.tobytes()
    others = [
        generate_pathfinder(cfg, 3, "val", 18),
        generate_pathfinder(cfg, 3, "train", 17),
        generate_pathfinder(cfg, 3, "test", 17),
        generate_pathfinder(cfg, 4, "val", 17),
    ]
    for o in others:
        assert o.image.tobytes() != later.image.tobytes()


@pytest.mark.parametrize("preset", ["pathfinder32", "pathx"])
def test_data_pathfinder_batch_equals_single(preset):
    """The lockstep batch generator gives each example exactly as alone, in any batch."""
    cfg = pathfinder_config(preset, 9)
    indices = [11, 2, 7] if preset == "pathx" else [40, 3, 17, 0, 25, 8, 31, 12]
    batch = generate_pathfinder_batch(cfg, 5, "test", indices)
    other = {
        i: ex
        for i, ex in zip(indices[::-1], generate_pathfinder_batch(cfg, 5, "test", indices[::-1]), strict=True)
    }
    for i, ex in zip(indices, batch, strict=True):
        single = generate_pathfinder(cfg, 5, "test", i)
        for e in (ex, other[i]):
            assert e.image.tobytes() == single.image.tobytes() and e.label == single.label
            np.testing.assert_array_equal(e.markers, single.markers)
            np.testing.assert_array_equal(e.paddles, single.paddles)


def test_data_pathfinder32_labels_by_flood_fill_and_balance():
    labels = _check_connectivity(_continuous("pathfinder32", 14), 200)
    assert 0.45 <= labels.mean() <= 0.55
    assert 0.25 < np.mean(labels[::2]) < 0.75  # not a fixed pattern in the index


def test_data_pathfinder_easy_and_larger_levels_by_flood_fill():
    _check_connectivity(_continuous("pathfinder32", 6), 60, bfs=True)
    _check_connectivity(_continuous("pathfinder64", 9), 30)
    _check_connectivity(_continuous("pathx", 14), 20)


@pytest.mark.slow
def test_data_pathfinder_big_levels_by_flood_fill():
    _check_connectivity(_continuous("pathx", 14), 200)
    _check_connectivity(_continuous("pathfinder256", 14), 40)
    _check_connectivity(_continuous("pathfinder64", 14), 300)
    labels = _check_connectivity(_continuous("pathfinder32", 9), 600)
    assert 0.45 <= labels.mean() <= 0.55


@pytest.mark.parametrize("style", ["lra", "continuous"])
def test_data_pathfinder_easier_levels_are_shorter(style):
    lit = {}
    for cl in (6, 14):
        cfg = pathfinder_config("pathfinder32", cl, style)
        lit[cl] = np.mean(
            [(ex.image > 0).mean() for ex in generate_pathfinder_batch(cfg, 0, "train", range(20))]
        )
    assert lit[6] < lit[14]


# -- lra style: labels from the recorded geometry -------------------------------------


def _linkings(paddles, cfg, margin):
    """Every way to link the paddles into chains that the construction allows, using
    only their recorded geometry: paddle j may follow paddle i when j's pivot is i's
    pivot moved `paddle_length + 2 margin` along i's orientation (rounded up, as the
    generator does) and the turn has nonzero continuity weight; each paddle has at
    most one successor and one predecessor; the chains are two of `contour_length`
    paddles and the rest of `distractor_length`. Yields lists of chains (row lists)."""
    n, cl, dl = len(paddles), cfg.contour_length, cfg.distractor_length
    k, rest = divmod(n - 2 * cl, dl)
    if rest or k < 0:
        return
    need = n - 2 - k  # links
    step = cfg.paddle_length + 2 * margin
    pivot = paddles[:, :2].astype(np.int64)
    orient = paddles[:, 2]
    nxt = np.stack(
        [np.ceil(pivot[:, 0] + step * np.sin(orient)), np.ceil(pivot[:, 1] + step * np.cos(orient))], 1
    ).astype(np.int64)
    at = {}
    for j, p in enumerate(map(tuple, pivot)):
        at.setdefault(p, []).append(j)
    cands = []
    for i, p in enumerate(map(tuple, nxt)):
        turns = [abs((orient[j] - orient[i] + np.pi) % (2 * np.pi) - np.pi) for j in at.get(p, [])]
        cands.append(
            [
                j
                for j, t in zip(at.get(p, []), turns, strict=True)
                if j != i and t * cfg.continuity < np.pi / 2 + 1e-9
            ]
        )
    order = [i for i in range(n) if cands[i]]
    succ, used = {}, set()

    def search(pos, links):
        if links + (len(order) - pos) < need:
            return
        if pos == len(order):
            chains = []
            for start in set(range(n)) - used:
                chain = [start]
                while chain[-1] in succ and len(chain) <= n:
                    chain.append(succ[chain[-1]])
                chains.append(chain)
            lengths = sorted(map(len, chains))
            if sum(lengths) == n and lengths == sorted([cl, cl] + [dl] * k):
                yield [list(c) for c in chains]
            return
        i = order[pos]
        for j in cands[i]:
            if j not in used:
                succ[i] = j
                used.add(j)
                yield from search(pos + 1, links + 1)
                used.discard(j)
                del succ[i]
        yield from search(pos + 1, links)

    yield from search(0, 0)


def _snakes_of(ex, cfg, rng):
    """The chains of `ex`, rebuilt from its paddles (shuffled; margin found by trying
    each). Returns (paddles, margin, chains, answers): `answers` is the set of "are
    the markers on one chain" over every linking the geometry allows with both
    markers on target chain ends."""
    paddles = ex.paddles[rng.permutation(len(ex.paddles))]
    marks = [tuple(m.astype(int)) for m in ex.markers]
    for margin in cfg.paddle_margins:
        answers, first = set(), None
        for chains in _linkings(paddles, cfg, margin):
            owner = []
            for m in marks:
                hits = [
                    k
                    for k, ch in enumerate(chains)
                    if len(ch) == cfg.contour_length and m in _ends(paddles, ch)
                ]
                owner.append(hits[0] if len(hits) == 1 else None)
            if None in owner:  # markers go on target snake ends: not this linking
                continue
            answers.add(owner[0] == owner[1])
            first = first or chains
            if len(answers) > 1:
                break
        if answers:
            return paddles, margin, first, answers
    raise AssertionError("the paddles do not link into the chains the construction makes")


def _ends(paddles, chain):
    """A chain's two ends: the stroke start of its first and of its last paddle."""
    return {tuple(paddles[chain[0], 3:5].astype(int)), tuple(paddles[chain[-1], 3:5].astype(int))}


def _check_geometry(cfg, seed, indices):
    rng = np.random.default_rng(0)
    examples = generate_pathfinder_batch(cfg, seed, "train", indices)
    gaps = []
    for i, ex in zip(indices, examples, strict=True):
        paddles, margin, chains, answers = _snakes_of(ex, cfg, rng)
        # the geometry decides whether the markers are on one snake: the label
        assert answers == {ex.label == 1}, (i, ex.label, answers)
        # Dashed: a linked pair leaves a gap of about 2 margin between the strokes
        # (the far end of one, the near end of the next).
        for ch in chains:
            for a, b in zip(ch, ch[1:], strict=False):
                to_start = np.hypot(*(paddles[a, 0:2] - paddles[a, 3:5]))
                far = (
                    paddles[a, 5:7]
                    if to_start < np.hypot(*(paddles[a, 0:2] - paddles[a, 5:7]))
                    else paddles[a, 3:5]
                )
                gaps.append(np.hypot(*(paddles[b, 5:7] - far)) / margin)
    # In units of the margin; integer rounding of pivots and ends makes a few gaps
    # small at 1 px margins (pathfinder32/64), as in the original.
    q = np.percentile(gaps, [0, 5, 50, 100])
    assert q[0] > 0.1 and q[1] > 0.6 and 1.4 < q[2] < 2.4 and q[3] < 4.5, q
    return examples


def test_data_pathfinder_lra_labels_from_geometry():
    examples = _check_geometry(pathfinder_config("pathfinder32", 14), 0, range(120))
    _check_geometry(pathfinder_config("pathfinder32", 6), 1, range(60))
    _check_geometry(pathfinder_config("pathfinder64", 9), 0, range(16))
    _check_geometry(pathfinder_config("pathx", 14), 0, range(8))
    labels = np.array([ex.label for ex in examples])
    assert 0.45 <= labels.mean() <= 0.55


@pytest.mark.slow
def test_data_pathfinder_lra_labels_from_geometry_big():
    _check_geometry(pathfinder_config("pathfinder32", 9), 2, range(600))
    _check_geometry(pathfinder_config("pathx", 14), 1, range(100))
    _check_geometry(pathfinder_config("pathfinder256", 14), 0, range(20))
    _check_geometry(pathfinder_config("pathfinder64", 14), 0, range(100))


def _render_with_pillow(ex, cfg, margin, chains, paddles):
    """Re-render an lra image from its recorded paddles as the original generator
    does: each stroke drawn with Pillow on a float image at `antialias_scale`x, cut
    out around its start, Lanczos-shrunk to 8 bits; markers likewise over the whole
    image; max-composited; byte-scaled to a maximum of 255."""
    from PIL import Image, ImageDraw

    aa, H = cfg.antialias_scale, cfg.size
    R = cfg.paddle_length + math.ceil(cfg.paddle_thickness) + margin
    n_fine, n = 2 * R * aa + 1, 2 * R + 1
    scale = n_fine / n
    canvas = np.zeros((H + 2 * R, H + 2 * R))
    for ch in chains:
        contrast = cfg.snake_contrast * (cfg.paddle_contrast if len(ch) == cfg.contour_length else 1.0)
        for j in ch:
            r, c = paddles[j, 3:5].astype(int)
            dr, dc = np.round((paddles[j, 5:7] - paddles[j, 3:5]) * scale).astype(int)
            fine = Image.new("F", (n_fine, n_fine), "black")
            cen = R * aa
            width = round(cfg.paddle_thickness * aa)
            ImageDraw.Draw(fine).line([(cen, cen), (cen + dc, cen + dr)], fill="white", width=width)
            sprite = np.array(
                Image.fromarray(np.array(fine).astype(np.uint8)).resize((n, n), Image.Resampling.LANCZOS)
            )
            sub = canvas[r : r + n, c : c + n]
            np.maximum(sub, sprite / 255.0 * contrast, out=sub)
    image = canvas[R : R + H, R : R + H]
    for m in ex.markers.astype(int):
        y, x = np.ogrid[-m[0] * aa : (H - m[0]) * aa, -m[1] * aa : (H - m[1]) * aa]
        disk = ((x * x + y * y) <= (cfg.marker_radius * aa) ** 2).astype(np.uint8) * 255
        marker = np.array(Image.fromarray(disk).resize((H, H), Image.Resampling.LANCZOS))
        np.maximum(image, marker / 255.0, out=image)
    return (np.clip((image - image.min()) * 255.0 / (image.max() - image.min()), 0, 255) + 0.5).astype(
        np.uint8
    )


@pytest.mark.parametrize("preset,n", [("pathfinder32", 12), ("pathfinder64", 3), ("pathx", 2)])
def test_data_pathfinder_lra_images_match_pillow(preset, n):
    pytest.importorskip("PIL")
    cfg = pathfinder_config(preset, 14)
    rng = np.random.default_rng(1)
    for ex in generate_pathfinder_batch(cfg, 0, "val", range(n)):
        paddles, margin, chains, _ = _snakes_of(ex, cfg, rng)
        ref = _render_with_pillow(ex, cfg, margin, chains, paddles)
        diff = np.abs(ref.astype(int) - ex.image)
        # Pillow shrinks each marker over the whole image: near the border its kernel is
        # renormalized, which the generator does not do; elsewhere the images agree.
        border = np.zeros_like(diff, bool)
        for m in ex.markers.astype(int):
            if min(*m, cfg.size - 1 - m[0], cfg.size - 1 - m[1]) < cfg.marker_radius + 4:
                y, x = np.ogrid[: cfg.size, : cfg.size]
                border |= np.maximum(abs(y - m[0]), abs(x - m[1])) <= cfg.marker_radius + 4
        assert diff[~border].max() == 0, (preset, int(diff.max()), np.argwhere(diff > 0)[:5])


def test_data_pathfinder_lra_is_not_solved_by_flood_fill():
    """Dashed chains: lit pixels do not tell which markers are connected, and the
    number of pieces is several times the number of snakes and varies."""
    for preset, n, least in [("pathfinder32", 200, 2.0), ("pathx", 30, 4.0)]:
        cfg = pathfinder_config(preset, 14)
        examples = generate_pathfinder_batch(cfg, 0, "test", range(n))
        labels = np.array([ex.label for ex in examples])
        for threshold in (0, 64):
            guess = np.array([_connected(ex.image, ex.markers, threshold) for ex in examples])
            assert np.mean(guess == (labels == 1)) < 0.7, (preset, threshold)
        snakes = 2 + cfg.num_distractors
        pieces = np.array([ndi.label(ex.image > 64, structure=EIGHT)[1] for ex in examples])
        assert pieces.mean() > least * snakes and pieces.std() > 1.0, (preset, pieces.mean(), pieces.std())


def test_data_pathfinder_lra_statistics():
    """Per-level image statistics stay where the original's parameters put them
    (`benchmarks/pathfinder_speed.py --stats` prints the full table)."""
    # preset: (lit fraction, fraction > 128) ranges at contour length 14
    expected = {"pathfinder32": ((0.38, 0.54), (0.08, 0.14)), "pathx": ((0.11, 0.17), (0.022, 0.04))}
    for preset, ((lo, hi), (blo, bhi)) in expected.items():
        cfg = pathfinder_config(preset, 14)
        images = np.stack([ex.image for ex in generate_pathfinder_batch(cfg, 0, "train", range(24))])
        lit, bright = (images > 0).mean(), (images > 128).mean()
        assert lo < lit < hi and blo < bright < bhi, (preset, lit, bright)
        # images differ from each other (lit fraction spread)
        assert (images > 0).mean(axis=(1, 2)).std() > 0.003


@pytest.mark.parametrize("style", ["lra", "continuous"])
def test_data_pathfinder_marker_distance_is_no_cue(style):
    from scipy.stats import ks_2samp

    cfg = pathfinder_config("pathfinder32", 6, style)
    dist = {0: [], 1: []}
    for ex in generate_pathfinder_batch(cfg, 0, "val", range(300)):
        dist[ex.label].append(float(np.hypot(*(ex.markers[0] - ex.markers[1]))))
    assert min(min(dist[0]), min(dist[1])) >= cfg.seed_distance - 1
    assert ks_2samp(dist[0], dist[1]).pvalue > 0.05
    assert abs(np.mean(dist[0]) - np.mean(dist[1])) < 0.6


def test_data_pathfinder_bad_arguments():
    with pytest.raises(ValueError, match="preset"):
        pathfinder_config("pathfinder16")
    with pytest.raises(ValueError, match="contour_length"):
        pathfinder_config("pathx", 10)
    with pytest.raises(ValueError, match="style"):
        pathfinder_config("pathx", 14, "dashed")
    with pytest.raises(ValueError, match="split"):
        generate_pathfinder(pathfinder_config("pathfinder32"), 0, "dev", 0)


# -- sources and caches ----------------------------------------------------------------


def test_data_pathfinder_source_items():
    src = make_source("pathfinder32", "train", contour_length=6, size=10)
    assert isinstance(src, PathfinderSource) and len(src) == 10 and "style='lra'" in repr(src)
    ex = generate_pathfinder(pathfinder_config("pathfinder32", 6), 0, "train", 4)
    item = src[4]
    assert item["inputs"].shape == (1024, 1) and item["inputs"].dtype == np.float32
    assert item["label"].dtype == np.int32 and int(item["label"]) == ex.label
    np.testing.assert_array_equal(item["inputs"][:, 0], ex.image.reshape(-1) / np.float32(255))
    tok = make_source("pathfinder32", "train", contour_length=6, size=10, as_tokens=True)[4]
    assert tok["inputs"].shape == (1024,) and tok["inputs"].dtype == np.int32
    np.testing.assert_array_equal(tok["inputs"], ex.image.reshape(-1))
    cont = make_source("pathfinder32", "train", contour_length=6, size=10, style="continuous")[4]
    old = generate_pathfinder(_continuous("pathfinder32", 6), 0, "train", 4)
    np.testing.assert_array_equal(cont["inputs"][:, 0], old.image.reshape(-1) / np.float32(255))
    with pytest.raises(IndexError):
        src[10]
    assert len(make_source("pathx", "val")) == 20_000
    assert len(pickle.dumps(make_source("pathx", "train"))) < 2000


def test_data_pathfinder_cache_roundtrip(tmp_path):
    seen = []
    meta = write_pathfinder(
        tmp_path,
        "pathfinder32",
        30,
        seed=5,
        contour_length=6,
        chunk=7,
        progress=lambda done, total: seen.append((done, total)),
    )
    assert meta["splits"] == {"train": 24, "val": 3, "test": 3}
    assert seen[-1] == (30, 30)
    on_disk = json.loads((tmp_path / "metadata.json").read_text())
    assert on_disk["preset"] == "pathfinder32" and on_disk["contour_length"] == 6
    assert on_disk["style"] == "lra" and on_disk["generator_version"] == 2
    images = np.load(tmp_path / "train_images.npy")
    labels = np.load(tmp_path / "train_labels.npy")
    assert images.shape == (24, 32, 32) and images.dtype == np.uint8 and labels.shape == (24,)
    cfg = pathfinder_config("pathfinder32", 6)
    for split, n in meta["splits"].items():
        cached = make_source("pathfinder32", split, data_dir=tmp_path, contour_length=6)
        fly = make_source("pathfinder32", split, seed=5, contour_length=6, size=n)
        assert isinstance(cached, PathfinderCacheSource) and len(cached) == n
        for i in range(n):
            ex = generate_pathfinder(cfg, 5, split, i)
            a, b = cached[i], fly[i]
            np.testing.assert_array_equal(a["inputs"], b["inputs"])
            assert int(a["label"]) == int(b["label"]) == ex.label
    # pickles small and reopens its memory maps lazily
    src = make_source("pathfinder32", "train", data_dir=tmp_path, contour_length=6, as_tokens=True)
    src[0]
    blob = pickle.dumps(src)
    assert len(blob) < 4000
    np.testing.assert_array_equal(pickle.loads(blob)[3]["inputs"], images[3].reshape(-1))


def _cache_files(directory):
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def test_data_pathfinder_cache_other_settings_need_overwrite(tmp_path):
    """As write_listops: the same settings keep the cache, other settings are refused
    (both shown) and leave it as it was, unless overwrite=True."""
    write_pathfinder(tmp_path, "pathfinder32", 6, contour_length=6)
    before = _cache_files(tmp_path)
    kept = write_pathfinder(tmp_path, "pathfinder32", 6, contour_length=6)
    assert kept == json.loads(before["metadata.json"]) and _cache_files(tmp_path) == before
    for other, found, asked in (
        (dict(preset="pathfinder64"), "preset pathfinder32", "preset pathfinder64"),
        (dict(contour_length=9), "contour_length 6", "contour_length 9"),
        (dict(style="continuous"), "style lra; generator_version 2", "style continuous; generator_version 1"),
        (dict(seed=3), "seed 0", "seed 3"),
        (dict(size=7), "splits {'train': 4", "splits {'train': 5"),
    ):
        args = {"preset": "pathfinder32", "size": 6, "contour_length": 6, **other}
        with pytest.raises(ValueError) as e:
            write_pathfinder(tmp_path, args.pop("preset"), args.pop("size"), **args)
        msg = str(e.value)
        assert msg.startswith(f"{tmp_path} holds a Pathfinder cache written with other settings")
        assert f"it has {found}" in msg and f"asked for {asked}" in msg and "overwrite=True" in msg
        assert _cache_files(tmp_path) == before
    write_pathfinder(tmp_path, "pathfinder64", 6, contour_length=6, seed=3, overwrite=True)
    new = json.loads((tmp_path / "metadata.json").read_text())
    assert (new["preset"], new["seed"], new["image_size"]) == ("pathfinder64", 3, 64)
    assert np.load(tmp_path / "train_images.npy").shape == (4, 64, 64)


def test_data_pathfinder_cache_parallel_workers(tmp_path):
    write_pathfinder(tmp_path / "one", "pathfinder32", 40, contour_length=6, chunk=8)
    write_pathfinder(tmp_path / "two", "pathfinder32", 40, contour_length=6, chunk=8, workers=2)
    for name in ("train_images", "train_labels", "val_images", "test_labels"):
        a = np.load(tmp_path / "one" / f"{name}.npy")
        b = np.load(tmp_path / "two" / f"{name}.npy")
        np.testing.assert_array_equal(a, b)


def test_data_pathfinder_cache_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="seqkit data pathfinder --preset pathx"):
        make_source("pathx", "train", data_dir=tmp_path)
    with pytest.raises(PathfinderCacheNotFoundError):
        make_source("pathx", "train", data_dir=tmp_path)
    write_pathfinder(tmp_path / "pathfinder32", "pathfinder32", 10, contour_length=6)
    # found under data_dir/<name>
    assert len(make_source("pathfinder32", "train", data_dir=tmp_path, contour_length=6)) == 8
    with pytest.raises(ValueError, match="contour length 6"):
        make_source("pathfinder32", "train", data_dir=tmp_path, contour_length=14)
    with pytest.raises(ValueError, match="size"):
        make_source("pathfinder32", "val", data_dir=tmp_path, contour_length=6, size=5)
    with pytest.raises(ValueError, match="accepted: contour_length, as_tokens, style"):
        make_source("pathfinder32", "train", colour=True)
    with pytest.raises(ValueError, match="expected a data seed >= 0, got -1"):
        write_pathfinder(tmp_path / "negative", "pathfinder32", 10, seed=-1)
    cfg = pathfinder_config("pathfinder32", 6)
    for build in (
        lambda: PathfinderSource(cfg, "val", seed=-1),
        lambda: make_source("pathx", "val", seed=-1),
    ):
        with pytest.raises(ValueError, match="^expected a data seed >= 0, got -1$"):
            build()  # when built, not at the first item (in a grain worker)
    assert not (tmp_path / "negative").exists()


def test_data_pathfinder_cache_style_is_checked(tmp_path):
    write_pathfinder(tmp_path, "pathfinder32", 6, contour_length=6, style="continuous")
    meta = json.loads((tmp_path / "metadata.json").read_text())
    assert (meta["style"], meta["generator_version"]) == ("continuous", 1)
    cached = make_source("pathfinder32", "train", data_dir=tmp_path, contour_length=6, style="continuous")
    old = generate_pathfinder(_continuous("pathfinder32", 6), 0, "train", 2)
    np.testing.assert_array_equal(cached[2]["inputs"][:, 0], old.image.reshape(-1) / np.float32(255))
    with pytest.raises(ValueError) as e:
        make_source("pathfinder32", "train", data_dir=tmp_path, contour_length=6)
    msg = str(e.value)
    assert "style 'continuous' (generator version 1)" in msg and "not preset" in msg
    assert "style 'lra' (generator version 2)" in msg and "--overwrite" in msg
    # a cache from before styles (no "style" in its metadata) holds the continuous style
    del meta["style"]
    (tmp_path / "metadata.json").write_text(json.dumps(meta))
    make_source("pathfinder32", "val", data_dir=tmp_path, contour_length=6, style="continuous")
    with pytest.raises(ValueError, match="style 'continuous'"):
        make_source("pathfinder32", "val", data_dir=tmp_path, contour_length=6, style="lra")
    # a cache of an older lra generator is refused with both versions shown
    meta.update(style="lra", generator_version=1)
    (tmp_path / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"style 'lra' \(generator version 1\), not .* version 2"):
        make_source("pathfinder32", "val", data_dir=tmp_path, contour_length=6)


def test_data_pathfinder_cli_style(tmp_path, capsys):
    out = tmp_path / "pf"
    argv = ["data", "pathfinder", "--preset", "pathfinder32", "--contour-length", "6", "--size", "6"]
    assert cli.main([*argv, "--out", str(out), "--style", "continuous"]) == 0
    assert json.loads((out / "metadata.json").read_text())["style"] == "continuous"
    assert cli.main([*argv, "--out", str(tmp_path / "lra")]) == 0
    assert json.loads((tmp_path / "lra" / "metadata.json").read_text())["style"] == "lra"
    capsys.readouterr()
