"""The published LRA files (`lra_release.gz`) read by `make_source`: tiny layouts in the
exact public formats, checked against an independent decoding (no downloads).

ListOps: `lra_release/listops-1000/basic_{train,val,test}.tsv`, written as LRA's
generator writes them (`csv.writer(delimiter="\\t")`, header `Source, Target`, CRLF
rows). Pathfinder: `lra_release/pathfinder32/<level>/{imgs/<n>/sample_<k>.png,
metadata/<n>.npy}` with text metadata rows `imgs/<n> sample_<k>.png <k> <label> ...`.
"""

import csv
import os
import pickle

import numpy as np
import pytest
from PIL import Image

from seqkit.data import (
    DataError,
    DataNotFoundError,
    ListOpsCacheNotFoundError,
    ListOpsReleaseSource,
    ListOpsSource,
    PathfinderCacheNotFoundError,
    PathfinderCacheSource,
    PathfinderReleaseSource,
    PathfinderSource,
    check_dataset,
    generate_listops_batch,
    listops_text,
    make_source,
    pathfinder_config,
    s4_permutation,
    write_listops,
    write_pathfinder,
)

VOCAB = ("<pad>", "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "[MIN", "[MAX", "[MED", "[SM", "]")
ROW_TAIL = "1.0 14 4 2 0.5 1 1"  # continuity, contour length, ... as the release's rows have them


# -- ListOps -----------------------------------------------------------------------------


def _random_tree(rng, depth=1):
    """A tree as LRA's generator builds it: a digit, or (operator, [children])."""
    if depth >= 4 or rng.random() > 0.4:
        return int(rng.integers(0, 10))
    return (
        ["[MIN", "[MAX", "[MED", "[SM"][rng.integers(0, 4)],
        [_random_tree(rng, depth + 1) for _ in range(rng.integers(2, 5))],
    )


def _lra_string(tree) -> str:
    """LRA's `to_string` (lra_benchmarks/data/listops.py), rewritten: the operator
    applied to its arguments one at a time, `((op, a), b) ... ], each pair in parentheses."""

    def binary(t):
        if isinstance(t, int):
            return t
        op, args = t
        b = (op, binary(args[0]))
        for a in args[1:]:
            b = (b, binary(a))
        return (b, "]")

    def show(b):
        if isinstance(b, (int, str)):
            return str(b)
        return "( " + show(b[0]) + " " + show(b[1]) + " )"

    return show(binary(tree))


def _value(tree) -> int:
    if isinstance(tree, int):
        return tree
    op, args = tree
    vals = [_value(a) for a in args]
    return {"[MIN": min, "[MAX": max, "[MED": lambda v: int(np.median(v)), "[SM": lambda v: sum(v) % 10}[op](
        vals
    )


def _ids(tree) -> list[int]:
    if isinstance(tree, int):
        return [VOCAB.index(str(tree))]
    op, args = tree
    return [VOCAB.index(op), *(i for a in args for i in _ids(a)), VOCAB.index("]")]


def _write_tsv(path, rows):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", newline="") as f:  # csv's own "\r\n" line ends, as LRA's files have
        writer = csv.writer(f, delimiter="\t")
        writer.writerow(["Source", "Target"])
        writer.writerows(rows)


def write_listops_release(folder, n=(5, 3, 3), seed=0) -> dict:
    """basic_{train,val,test}.tsv in `folder`; returns {split: [(ids, label), ...]}."""
    rng = np.random.default_rng(seed)
    out = {}
    for split, count in zip(("train", "val", "test"), n, strict=True):
        trees = [_random_tree(rng) for _ in range(count)]
        trees[0] = ("[MAX", [2, 9, ("[MIN", [4, 7]), 0])  # the example of the LRA paper
        _write_tsv(os.path.join(folder, f"basic_{split}.tsv"), [[_lra_string(t), _value(t)] for t in trees])
        out[split] = [(_ids(t), _value(t)) for t in trees]
    return out


def test_data_lra_release_listops_string_is_lra_format():
    assert _lra_string(("[MAX", [2, 9])) == "( ( ( [MAX 2 ) 9 ) ] )"
    assert _lra_string(("[MAX", [2, 9, ("[MIN", [4, 7]), 0])) == listops_text(
        _ids(("[MAX", [2, 9, ("[MIN", [4, 7]), 0]))
    )


@pytest.mark.parametrize(
    "where",
    ["lra_release/listops-1000", "lra_release/lra_release/listops-1000", "listops-1000", "listops", "."],
)
def test_data_lra_release_listops_items(tmp_path, where):
    expected = write_listops_release(tmp_path / where)
    for split, rows in expected.items():
        src = make_source("listops", split, data_dir=tmp_path)
        assert isinstance(src, ListOpsReleaseSource) and len(src) == len(rows)
        for i, (ids, label) in enumerate(rows):
            item = src[i]
            assert set(item) == {"inputs", "label", "mask"}
            assert item["inputs"].shape == (2048,) and item["inputs"].dtype == np.int32
            assert item["mask"].shape == (2048,) and item["mask"].dtype == bool
            assert item["label"].dtype == np.int32 and int(item["label"]) == label
            np.testing.assert_array_equal(item["inputs"][: len(ids)], ids)
            assert not item["inputs"][len(ids) :].any()
            np.testing.assert_array_equal(item["mask"], np.arange(2048) < len(ids))
    assert len(make_source("listops", "train", data_dir=tmp_path, size=2)) == 2
    assert make_source("listops", "val", data_dir=tmp_path, max_length=64)[0]["inputs"].shape == (64,)


def test_data_lra_release_listops_same_items_as_generated(tmp_path):
    """A release file holding generated trees reads back as the generated source's items."""
    folder = tmp_path / "lra_release" / "listops-1000"
    for split in ("train", "val", "test"):
        examples = generate_listops_batch(0, split, range(3))
        _write_tsv(folder / f"basic_{split}.tsv", [[listops_text(e.tokens), e.label] for e in examples])
        released, generated = make_source("listops", split, data_dir=tmp_path), ListOpsSource(split, size=3)
        for i in range(3):
            a, b = released[i], generated[i]
            assert a.keys() == b.keys()
            for k in a:
                assert a[k].dtype == b[k].dtype
                np.testing.assert_array_equal(a[k], b[k])


def test_data_lra_release_listops_other_spacing_and_pickle(tmp_path):
    folder = tmp_path / "lra_release" / "listops-1000"
    write_listops_release(folder)
    # any spacing tokenize_listops accepts: the same tokens
    _write_tsv(folder / "basic_test.tsv", [["([MAX  2(9)]) ", 9], ["[SM 1 2 ]", 3]])
    src = make_source("listops", "test", data_dir=tmp_path)
    np.testing.assert_array_equal(src[0]["inputs"][:4], [12, 3, 10, 15])
    np.testing.assert_array_equal(src[1]["inputs"][:4], [14, 2, 3, 15])
    blob = pickle.dumps(src)
    assert len(blob) < 2000
    np.testing.assert_array_equal(pickle.loads(blob)[1]["inputs"], src[1]["inputs"])


def _listops_error(tmp_path, text: str, split="val"):
    folder = tmp_path / "lra_release" / "listops-1000"
    write_listops_release(folder)
    (folder / f"basic_{split}.tsv").write_bytes(text.encode())
    with pytest.raises(DataError) as e:
        make_source("listops", split, data_dir=tmp_path)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(str(folder / f"basic_{split}.tsv"))
    return msg


def test_data_lra_release_listops_bad_files(tmp_path):
    good = "Source\tTarget\r\n( ( ( [MAX 2 ) 9 ) ] )\t9\r\n( ( ( [MIN 2 ) 9 ) ] )\t2\r\n"
    # truncated: the last row cut inside its Source
    msg = _listops_error(tmp_path / "a", good[:-12])
    assert "line 3: expected 2 tab-separated fields" in msg and "truncated" in msg
    msg = _listops_error(tmp_path / "b", good.replace("\t2\r\n", "\t\r\n"))
    assert "line 3: expected a Target in 0..9" in msg
    msg = _listops_error(tmp_path / "c", good.replace("[MIN", "[MINE"))
    assert "line 3: not a ListOps tree" in msg and "'[MINE'" in msg
    msg = _listops_error(tmp_path / "d", "Text\tLabel\n1\t1\n")
    assert "expected the header line 'Source\\tTarget'" in msg and "got 'Text\\tLabel'" in msg
    msg = _listops_error(tmp_path / "e", "Source\tTarget\r\n")
    assert "holds no examples" in msg
    msg = _listops_error(tmp_path / "f", "\x89PNG\r\n\x1a\n\x00\x00garbage")
    assert "expected the header line" in msg
    # valid tokens that do not form one tree: each row is refused with its line
    not_trees = {
        "": "an empty Source",
        "] ] ]": "unbalanced ']'",
        "( ( [MAX 2 ) 9 )": "incomplete tree",
        "( [MAX ] )": "[MAX has no arguments",
        "( ( [SM 1 ) ] ) 4": "tokens after its end",
        "4 4": "tokens after its end",
    }
    for k, (source, why) in enumerate(not_trees.items()):
        msg = _listops_error(tmp_path / f"g{k}", f"Source\tTarget\r\n[SM 1 2 ]\t3\r\n{source}\t7\r\n")
        assert "line 3: expected one ListOps tree" in msg and f"got {source!r}" in msg and why in msg
    # longer than seq_len
    folder = tmp_path / "h" / "lra_release" / "listops-1000"
    write_listops_release(folder)
    _write_tsv(
        folder / "basic_train.tsv", [["[SM 1 2 ]", 3], ["( ( ( [MAX 2 ) 9 ) ] )", 9], ["[SM 1 2 3 ]", 6]]
    )
    with pytest.raises(
        DataError,
        match=r"basic_train.tsv, line 4: a tree of 5 tokens, expected at most the padded length "
        r"\(max_length / seq_len\) 4",
    ):
        make_source("listops", "train", data_dir=tmp_path / "h", max_length=4)


def test_data_lra_release_listops_blank_lines(tmp_path):
    """Blank lines (a trailing CRLF, an empty line between rows) are passed over, and
    rows keep their own line numbers in later errors."""
    folder = tmp_path / "lra_release" / "listops-1000"
    write_listops_release(folder)
    text = "Source\tTarget\r\n[SM 1 2 ]\t3\r\n\r\n  \n( ( ( [MAX 2 ) 9 ) ] )\t9\r\n[SM 1 2 3 ]\t6\r\n\r\n"
    (folder / "basic_train.tsv").write_bytes(text.encode())
    src = make_source("listops", "train", data_dir=tmp_path)
    assert len(src) == 3 and [int(src[i]["label"]) for i in range(3)] == [3, 9, 6]
    np.testing.assert_array_equal(src[1]["inputs"][:4], [12, 3, 10, 15])
    with pytest.raises(DataError, match=r"basic_train.tsv, line 6: a tree of 5 tokens"):
        make_source("listops", "train", data_dir=tmp_path, max_length=4)


def test_data_lra_release_listops_missing_files(tmp_path):
    folder = tmp_path / "lra_release" / "listops-1000"
    write_listops_release(folder)
    os.remove(folder / "basic_test.tsv")
    with pytest.raises(DataNotFoundError) as e:
        make_source("listops", "test", data_dir=tmp_path)
    msg = str(e.value)
    assert (
        msg.startswith(f"{folder / 'basic_test.tsv'} is missing") and "basic_train.tsv, basic_val.tsv" in msg
    )
    assert "lra_release.gz" in msg
    # neither a cache nor the release: both ways named, each with its path
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ListOpsCacheNotFoundError) as e:
        make_source("listops", "train", data_dir=empty)
    msg = str(e.value)
    assert "seqkit data listops --size N --out" in msg
    assert str(empty / "lra_release" / "listops-1000" / "basic_{train,val,test}.tsv") in msg
    assert f"seqkit data check listops --data-dir {empty}" in msg


# -- Pathfinder ---------------------------------------------------------------------------


def test_data_lra_release_s4_permutation_is_torch_randperm():
    """`torch.randperm(10, generator=torch.Generator().manual_seed(seed))` on the CPU
    (values published with tests that compare against PyTorch)."""
    published = {
        0: [4, 1, 7, 5, 3, 9, 0, 8, 6, 2],
        1: [5, 6, 1, 2, 0, 8, 9, 3, 7, 4],
        42: [2, 6, 1, 8, 4, 5, 0, 9, 3, 7],
        (1 << 32) + 1: [5, 6, 1, 2, 0, 8, 9, 3, 7, 4],
        (1 << 53) - 1: [1, 4, 6, 2, 0, 5, 8, 7, 9, 3],
    }
    for seed, perm in published.items():
        np.testing.assert_array_equal(s4_permutation(10, seed), perm)
    big = s4_permutation(5000)
    np.testing.assert_array_equal(np.sort(big), np.arange(5000))
    assert s4_permutation(1).tolist() == [0] and s4_permutation(0).size == 0


def write_level(level_dir, batches=None, side=32, seed=0, binary=False):
    """A release level: imgs/<n>/sample_<k>.png and metadata/<n>.npy for n in `batches`
    (written in another order than their numbers). Returns the images and labels in
    S4's order (metadata files by number, rows in order) and the rows. `binary`:
    metadata in NumPy's format, `"str"` cells (Python 3's np.save) or `"bytes"`
    (Python 2's, where the generator ran: dtype S)."""
    batches = {10: 11, 2: 9} if batches is None else batches
    rng = np.random.default_rng(seed)
    rows = []
    os.makedirs(os.path.join(level_dir, "metadata"), exist_ok=True)
    for n in batches:
        os.makedirs(os.path.join(level_dir, "imgs", str(n)), exist_ok=True)
        lines = []
        for k in range(batches[n]):
            image = rng.integers(0, 256, (side, side), dtype=np.uint8)
            label = int(rng.integers(0, 2))
            Image.fromarray(image).save(os.path.join(level_dir, "imgs", str(n), f"sample_{k}.png"))
            lines.append(f"imgs/{n} sample_{k}.png {k} {label} {ROW_TAIL}")
            rows.append((n, k, image, label))
        meta = os.path.join(level_dir, "metadata", f"{n}.npy")
        if binary:  # what the public generator's np.save writes
            cells = [line.split() for line in lines]
            np.save(
                meta, np.array([[c.encode() for c in row] for row in cells] if binary == "bytes" else cells)
            )
        else:
            with open(meta, "w") as f:
                f.write("\n".join(lines) + "\n")
    rows.sort(key=lambda r: (r[0], r[1]))
    return [r[2] for r in rows], [r[3] for r in rows], rows


def _s4_expected(images, labels):
    """S4's split: consecutive slices of randperm(N) with seed 42, val and test int(0.1 N)."""
    n = len(labels)
    perm = s4_permutation(n, 42)
    held = int(0.1 * n)
    cuts = {"train": perm[: n - 2 * held], "val": perm[n - 2 * held : n - held], "test": perm[n - held :]}
    return {s: [(images[j], labels[j]) for j in idx] for s, idx in cuts.items()}, cuts


def _level_dir(root, folder="pathfinder32", level="curv_contour_length_14", nest="lra_release"):
    return os.path.join(root, nest, folder, level)


@pytest.mark.parametrize("nest", ["lra_release", "lra_release/lra_release", ".", "pathfinder", "s4"])
def test_data_lra_release_pathfinder_items_and_splits(tmp_path, nest):
    if nest == "s4":  # the data directory is the pathfinder32 folder itself
        level_dir, data_dir = tmp_path / "pathfinder32" / "curv_contour_length_14", tmp_path / "pathfinder32"
    else:
        level_dir, data_dir = _level_dir(tmp_path, nest=nest), tmp_path
    images, labels, _ = write_level(level_dir)
    expected, cuts = _s4_expected(images, labels)
    assert {s: len(c) for s, c in cuts.items()} == {"train": 16, "val": 2, "test": 2}
    assert sorted(np.concatenate(list(cuts.values())).tolist()) == list(range(20))
    for split, items in expected.items():
        src = make_source("pathfinder32", split, data_dir=data_dir)
        tok = make_source("pathfinder32", split, data_dir=data_dir, as_tokens=True)
        assert isinstance(src, PathfinderReleaseSource) and len(src) == len(tok) == len(items)
        for i, (image, label) in enumerate(items):
            item = src[i]
            assert item["inputs"].shape == (1024, 1) and item["inputs"].dtype == np.float32
            np.testing.assert_array_equal(item["inputs"][:, 0], image.reshape(-1).astype(np.float32) / 255)
            assert item["label"].dtype == np.int32 and int(item["label"]) == label
            assert tok[i]["inputs"].dtype == np.int32
            np.testing.assert_array_equal(tok[i]["inputs"], image.reshape(-1))
    assert len(make_source("pathfinder32", "train", data_dir=data_dir, size=5)) == 5


def test_data_lra_release_pathfinder_same_format_as_generated(tmp_path):
    write_level(_level_dir(tmp_path))
    released = make_source("pathfinder32", "val", data_dir=tmp_path)[0]
    generated = PathfinderSource(pathfinder_config("pathfinder32"), "val", size=1)[0]
    assert released.keys() == generated.keys()
    for k in released:
        assert (released[k].shape, released[k].dtype) == (generated[k].shape, generated[k].dtype)


@pytest.mark.parametrize("cells", ["str", "bytes"])
def test_data_lra_release_pathx_binary_metadata_and_pickle(tmp_path, cells):
    """Path-X is `pathfinder128`; metadata in NumPy's binary format reads the same,
    with text cells or Python 2's bytes cells."""
    images, labels, _ = write_level(_level_dir(tmp_path, "pathfinder128"), {0: 10}, side=128, binary=cells)
    expected, _ = _s4_expected(images, labels)
    src = make_source("pathx", "test", data_dir=tmp_path, as_tokens=True)
    np.testing.assert_array_equal(src[0]["inputs"], expected["test"][0][0].reshape(-1))
    blob = pickle.dumps(src)
    assert len(blob) < 2000
    again = pickle.loads(blob)
    np.testing.assert_array_equal(again[0]["inputs"], src[0]["inputs"])
    assert again.path(0) == src.path(0)


def test_data_lra_release_pathfinder_levels_and_excluded_image(tmp_path):
    """Contour length 6 is curv_baseline, 9 curv_contour_length_9; like S4, the release's
    empty pathfinder32/curv_baseline/imgs/0/sample_172.png is left out."""
    level_dir = _level_dir(tmp_path, level="curv_baseline")
    images, labels, _ = write_level(level_dir, {0: 173})
    open(os.path.join(level_dir, "imgs", "0", "sample_172.png"), "wb").close()  # empty, as in the release
    expected, cuts = _s4_expected(images[:172], labels[:172])
    sizes = {s: len(make_source("pathfinder32", s, data_dir=tmp_path, contour_length=6)) for s in cuts}
    assert sizes == {"train": 138, "val": 17, "test": 17}
    src = make_source("pathfinder32", "val", data_dir=tmp_path, contour_length=6)
    np.testing.assert_array_equal(src[3]["inputs"][:, 0] * 255, expected["val"][3][0].reshape(-1))
    images9, _, _ = write_level(_level_dir(tmp_path, level="curv_contour_length_9"), {1: 10}, seed=1)
    src9 = make_source("pathfinder32", "train", data_dir=tmp_path, contour_length=9)
    assert len(src9) == 8 and "curv_contour_length_9" in src9.path(0)


def test_data_lra_release_cache_is_used_first(tmp_path):
    write_level(_level_dir(tmp_path, level="curv_baseline"))
    write_pathfinder(tmp_path / "pathfinder32", "pathfinder32", 10, contour_length=6)
    assert isinstance(
        make_source("pathfinder32", "train", data_dir=tmp_path, contour_length=6), PathfinderCacheSource
    )
    (tmp_path / "pathfinder32" / "metadata.json").unlink()
    assert isinstance(
        make_source("pathfinder32", "train", data_dir=tmp_path, contour_length=6), PathfinderReleaseSource
    )


def test_data_lra_release_another_presets_folder_is_not_read(tmp_path):
    """An S4-style data directory that is the pathfinder32 folder is read as
    pathfinder32 only: Path-X is not looked for in it, and the message says why."""
    folder = tmp_path / "pathfinder32"
    write_level(folder / "curv_contour_length_14")
    assert isinstance(make_source("pathfinder32", "train", data_dir=folder), PathfinderReleaseSource)
    with pytest.raises(PathfinderCacheNotFoundError) as e:
        make_source("pathx", "train", data_dir=folder)
    msg = str(e.value)
    assert "a 32x32 image (L)" not in msg and "\n" not in msg  # no image is blamed
    assert str(folder / "lra_release" / "pathfinder128" / "curv_contour_length_14") in msg
    assert msg.endswith(
        f"{folder} is named as the release folder pathfinder32 (32x32 images), not pathfinder128, "
        "which pathx reads (128x128 images): give the folder holding pathfinder128 as the data directory"
    )
    # a folder of another name is still read as the task folder itself
    other = tmp_path / "mine"
    write_level(other / "curv_contour_length_14", side=128, batches={0: 10})
    assert isinstance(make_source("pathx", "test", data_dir=other), PathfinderReleaseSource)


def test_data_lra_release_pathfinder_is_the_lra_style_only(tmp_path):
    """The release holds LRA's dashed snakes: another style asks for a cache, which
    the message says how to write; without the release, no release advice is given."""
    write_level(_level_dir(tmp_path))
    with pytest.raises(ValueError) as e:
        make_source("pathfinder32", "train", data_dir=tmp_path, style="continuous")
    msg = str(e.value)
    assert msg.startswith(f"expected a pathfinder32 cache of style 'continuous' in {tmp_path}, got only")
    assert "--style continuous" in msg and "style='lra'" in msg and "\n" not in msg
    assert isinstance(make_source("pathfinder32", "train", data_dir=tmp_path), PathfinderReleaseSource)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(PathfinderCacheNotFoundError) as e:
        make_source("pathfinder32", "train", data_dir=empty, style="continuous")
    assert "--style continuous" in str(e.value) and "put the LRA release files" not in str(e.value)


def test_data_lra_release_other_tools_metadata_is_passed_over(tmp_path):
    """A `metadata.json` that is no seqkit cache's (another tool's notes) in the data
    directory neither hides the release files nor is offered for overwriting."""
    notes = '{"description": "my notes"}'
    (tmp_path / "metadata.json").write_text(notes)
    write_listops_release(tmp_path / "lra_release" / "listops-1000")
    write_level(_level_dir(tmp_path))
    assert isinstance(make_source("listops", "train", data_dir=tmp_path), ListOpsReleaseSource)
    assert isinstance(make_source("pathfinder32", "train", data_dir=tmp_path), PathfinderReleaseSource)
    for name in ("listops", "pathfinder32"):
        report = check_dataset(name, tmp_path)
        assert report.complete and "metadata.json" not in " ".join(f.path for f in report.files)
    # the writers refuse to replace it, overwrite or not
    for write in (
        lambda overwrite: write_listops(tmp_path, 40, overwrite=overwrite),
        lambda overwrite: write_pathfinder(tmp_path, "pathfinder32", 6, overwrite=overwrite),
    ):
        for overwrite in (False, True):
            with pytest.raises(ValueError) as e:
                write(overwrite)
            msg = str(e.value)
            assert msg.startswith(f"{tmp_path / 'metadata.json'} is not a seqkit cache's metadata")
            assert "'description'" in msg and "choose another directory" in msg and "--overwrite" not in msg
    assert (tmp_path / "metadata.json").read_text() == notes
    assert not any(p.suffix == ".npy" for p in tmp_path.iterdir())


def _pathfinder_error(tmp_path, damage, error=DataError, split="train", **write):
    level_dir = _level_dir(tmp_path)
    _, _, rows = write_level(level_dir, **write)
    damage(level_dir, rows)
    with pytest.raises(error) as e:
        src = make_source("pathfinder32", split, data_dir=tmp_path)
        for i in range(len(src)):
            src[i]
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def _rewrite_row(level_dir, n, line_index, new):
    path = os.path.join(level_dir, "metadata", f"{n}.npy")
    lines = open(path).read().splitlines()
    if new is None:
        del lines[line_index]
    else:
        lines[line_index] = new
    open(path, "w").write("\n".join(lines) + "\n")
    return path


def test_data_lra_release_pathfinder_bad_files(tmp_path):
    # a PNG of the wrong size: item 0 of the split fails when the source is built, others when read
    level_dir = _level_dir(tmp_path / "a")
    write_level(level_dir, {2: 20})
    perm = s4_permutation(20)  # test = rows perm[18:20]
    for j in perm[18:20]:
        Image.fromarray(np.zeros((64, 64), np.uint8)).save(
            os.path.join(level_dir, "imgs", "2", f"sample_{j}.png")
        )
    with pytest.raises(DataError) as e:
        make_source("pathfinder32", "test", data_dir=tmp_path / "a")
    bad = os.path.join(level_dir, "imgs", "2", f"sample_{perm[18]}.png")
    assert str(e.value).startswith(f"{bad}: a 64x64 image (L); expected a 32x32 grayscale PNG")
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(bad)
    src = make_source("pathfinder32", "test", data_dir=tmp_path / "a")
    with pytest.raises(DataError, match=f"sample_{perm[19]}.png: a 64x64 image"):
        src[1]

    # a truncated PNG
    def truncate(d, rows):
        path = os.path.join(d, "imgs", "10", "sample_3.png")
        raw = open(path, "rb").read()
        open(path, "wb").write(raw[: len(raw) // 2])

    msg = _pathfinder_error(tmp_path / "b", truncate)
    assert "sample_3.png is not a readable PNG (truncated or corrupt?)" in msg

    # a metadata row whose image is missing
    msg = _pathfinder_error(
        tmp_path / "c",
        lambda d, rows: os.remove(os.path.join(d, "imgs", "10", "sample_4.png")),
        error=DataNotFoundError,
    )
    meta = os.path.join(_level_dir(tmp_path / "c"), "metadata", "10.npy")
    assert msg.startswith(
        os.path.join(_level_dir(tmp_path / "c"), "imgs", "10", "sample_4.png") + " is missing"
    )
    assert f"{meta}, line 5 lists it" in msg and "1 of the 11 images" in msg

    # a label that is not 0/1, and a row cut short: the file and line are named
    msg = _pathfinder_error(
        tmp_path / "d", lambda d, rows: _rewrite_row(d, 2, 3, f"imgs/2 sample_3.png 3 7 {ROW_TAIL}")
    )
    assert msg.startswith(
        f"{os.path.join(_level_dir(tmp_path / 'd'), 'metadata', '2.npy')}, line 4: expected a row"
    )
    assert "'imgs/2 sample_3.png 3 7" in msg
    msg = _pathfinder_error(tmp_path / "e", lambda d, rows: _rewrite_row(d, 10, 10, "imgs/10 sampl"))
    assert "10.npy, line 11: expected a row" in msg and "truncated or corrupt?" in msg

    # labels that do not match the images: an image listed twice
    msg = _pathfinder_error(
        tmp_path / "f", lambda d, rows: _rewrite_row(d, 10, 2, f"imgs/2 sample_1.png 1 0 {ROW_TAIL}")
    )
    assert "10.npy, line 3: the labels do not match the images: imgs/2/sample_1.png is listed again" in msg
    assert "2.npy, line 2" in msg

    # a metadata file that is neither text nor an array
    msg = _pathfinder_error(
        tmp_path / "g",
        lambda d, rows: open(os.path.join(d, "metadata", "2.npy"), "wb").write(b"\x93NUMPY\x01\x00garbage"),
    )
    assert "2.npy is not a readable .npy array (truncated or corrupt?)" in msg


def test_data_lra_release_pathfinder_missing_folders(tmp_path):
    write_level(_level_dir(tmp_path))
    # another level than the one there
    with pytest.raises(DataNotFoundError) as e:
        make_source("pathfinder32", "train", data_dir=tmp_path, contour_length=9)
    msg = str(e.value)
    expected = os.path.join(tmp_path, "lra_release", "pathfinder32", "curv_contour_length_9", "metadata")
    assert msg.startswith(f"{expected} is missing: expected the curv_contour_length_9 level")
    assert "metadata/<n>.npy next to imgs/<n>/sample_<k>.png" in msg and "holds curv_contour_length_14" in msg
    # an empty metadata folder
    empty = _level_dir(tmp_path / "e")
    os.makedirs(os.path.join(empty, "metadata"))
    with pytest.raises(DataNotFoundError, match="holds no label files: expected metadata/<n>.npy"):
        make_source("pathfinder32", "val", data_dir=tmp_path / "e")
    # nothing: the cache's advice and the release's paths
    with pytest.raises(PathfinderCacheNotFoundError) as e:
        make_source("pathx", "train", data_dir=tmp_path / "none", contour_length=9)
    msg = str(e.value)
    assert "seqkit data pathfinder --preset pathx --contour-length 9 --size N" in msg
    level = os.path.join(tmp_path, "none", "lra_release", "pathfinder128", "curv_contour_length_9")
    assert (
        os.path.join(level, "metadata", "<n>.npy") in msg
        and os.path.join(level, "imgs", "<n>", "sample_<k>.png") in msg
    )
    assert f"seqkit data check pathx --data-dir {tmp_path / 'none'} --contour-length 9" in msg
