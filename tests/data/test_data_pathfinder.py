"""Pathfinder/Path-X generator: shapes, determinism, balance, and labels checked by flood fill."""

import json
import pickle
from collections import deque

import numpy as np
import pytest
import scipy.ndimage as ndi

from seqkit.data import (
    PATHFINDER_PRESETS,
    PathfinderCacheNotFoundError,
    PathfinderCacheSource,
    PathfinderSource,
    generate_pathfinder,
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


@pytest.mark.parametrize("preset", sorted(PATHFINDER_PRESETS))
def test_data_pathfinder_shapes(preset):
    cfg = pathfinder_config(preset)
    ex = generate_pathfinder(cfg, 0, "train", 0)
    assert ex.image.shape == (cfg.size, cfg.size)
    assert ex.image.dtype == np.uint8
    assert ex.label in (0, 1)
    assert ex.markers.shape == (2, 2)
    assert ex.image.max() == 255 and ex.image.min() == 0


def test_data_pathfinder_determinism():
    cfg = pathfinder_config("pathfinder32", 14)
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


def test_data_pathfinder32_labels_by_flood_fill_and_balance():
    labels = _check_connectivity(pathfinder_config("pathfinder32", 14), 200)
    assert 0.45 <= labels.mean() <= 0.55
    assert 0.25 < np.mean(labels[::2]) < 0.75  # not a fixed pattern in the index


def test_data_pathfinder_easy_and_larger_levels_by_flood_fill():
    _check_connectivity(pathfinder_config("pathfinder32", 6), 60, bfs=True)
    _check_connectivity(pathfinder_config("pathfinder64", 9), 30)
    _check_connectivity(pathfinder_config("pathx", 14), 20)


@pytest.mark.slow
def test_data_pathfinder_big_levels_by_flood_fill():
    _check_connectivity(pathfinder_config("pathx", 14), 200)
    _check_connectivity(pathfinder_config("pathfinder256", 14), 40)
    _check_connectivity(pathfinder_config("pathfinder64", 14), 300)
    labels = _check_connectivity(pathfinder_config("pathfinder32", 9), 600)
    assert 0.45 <= labels.mean() <= 0.55


def test_data_pathfinder_easier_levels_are_shorter():
    lit = {}
    for cl in (6, 14):
        cfg = pathfinder_config("pathfinder32", cl)
        lit[cl] = np.mean([(generate_pathfinder(cfg, 0, "train", i).image > 0).mean() for i in range(20)])
    assert lit[6] < lit[14]


def test_data_pathfinder_bad_arguments():
    with pytest.raises(ValueError, match="preset"):
        pathfinder_config("pathfinder16")
    with pytest.raises(ValueError, match="contour_length"):
        pathfinder_config("pathx", 10)
    with pytest.raises(ValueError, match="split"):
        generate_pathfinder(pathfinder_config("pathfinder32"), 0, "dev", 0)


def test_data_pathfinder_source_items():
    src = make_source("pathfinder32", "train", contour_length=6, size=10)
    assert isinstance(src, PathfinderSource) and len(src) == 10
    ex = generate_pathfinder(pathfinder_config("pathfinder32", 6), 0, "train", 4)
    item = src[4]
    assert item["inputs"].shape == (1024, 1) and item["inputs"].dtype == np.float32
    assert item["label"].dtype == np.int32 and int(item["label"]) == ex.label
    np.testing.assert_array_equal(item["inputs"][:, 0], ex.image.reshape(-1) / np.float32(255))
    tok = make_source("pathfinder32", "train", contour_length=6, size=10, as_tokens=True)[4]
    assert tok["inputs"].shape == (1024,) and tok["inputs"].dtype == np.int32
    np.testing.assert_array_equal(tok["inputs"], ex.image.reshape(-1))
    with pytest.raises(IndexError):
        src[10]
    assert len(make_source("pathx", "val")) == 20_000
    assert len(pickle.dumps(make_source("pathx", "train"))) < 2000


def test_data_pathfinder_cache_roundtrip(tmp_path):
    seen = []
    meta = write_pathfinder(
        tmp_path, "pathfinder32", 30, seed=5, contour_length=6, chunk=7,
        progress=lambda done, total: seen.append((done, total)),
    )
    assert meta["splits"] == {"train": 24, "val": 3, "test": 3}
    assert seen[-1] == (30, 30)
    on_disk = json.loads((tmp_path / "metadata.json").read_text())
    assert on_disk["preset"] == "pathfinder32" and on_disk["contour_length"] == 6
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
    with pytest.raises(ValueError, match="accepted: contour_length, as_tokens"):
        make_source("pathfinder32", "train", colour=True)
