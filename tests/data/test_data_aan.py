"""LRA Retrieval (AAN byte pairs) from small TSV files in the format of LRA's release (no downloads)."""

import itertools
import os
import pickle
import re

import numpy as np
import pytest

from seqkit import recipes
from seqkit.data import (
    AanSource,
    DataError,
    DataNotFoundError,
    batches,
    check_aan_files,
    make_source,
)
from seqkit.train import override

URL = "https://storage.googleapis.com/long-range-arena/lra_release.gz"
RELEASED = os.path.join("lra_release", "lra_release", "tsv_data")  # as lra_release.gz extracts
NAMES = {
    "train": "new_aan_pairs.train.tsv",
    "val": "new_aan_pairs.eval.tsv",
    "test": "new_aan_pairs.test.tsv",
}
SIZES = {"train": 7, "val": 3, "test": 4}


def _rows(split):
    """(label, id1, id2, text1, text2) rows; the texts as the release stores them (bytes literals)."""
    rows = []
    for i in range(SIZES[split]):
        text1 = f"b'Paper {i} of {split}: a \"quoted\" title\\nwith an escaped newline'"
        text2 = f"b'Other paper {i}: ' " + "long text " * (i * 3)
        if i == 1:
            text2 = "Café – naïve 🎓"  # raw UTF-8 bytes in the file
        if i == 2:
            text1 = ""  # an empty field is a pair with no bytes there
        label = ["0", "1", "1.0", "0.0"][i % 4]
        rows.append((label, f"P{i:02d}-{split}", f"W{i:02d}-1001", text1, text2))
    return rows


def _write_tsv(path, rows, newline="\n", tail=""):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(("".join("\t".join(r) + newline for r in rows) + tail).encode("utf-8"))


def _write_release(folder, newline="\n"):
    for split, name in NAMES.items():
        _write_tsv(folder / name, _rows(split), newline=newline, tail="\n" if split == "test" else "")


@pytest.fixture
def aan(tmp_path):
    root = tmp_path / "data"
    _write_release(root / RELEASED)
    return root


def _expected(text: str, L: int):
    """The LRA byte encoding, computed independently: UTF-8 bytes + 1, zero-padded."""
    ids = [b + 1 for b in text.encode("utf-8")][:L]
    return np.array(ids + [0] * (L - len(ids))), np.array([True] * len(ids) + [False] * (L - len(ids)))


def test_data_aan_tokens_labels_and_masks(aan):
    L = 40
    for split in ("train", "val", "test"):
        src = make_source("aan", split, data_dir=aan, max_length=L)
        rows = _rows(split)
        assert len(src) == len(rows)
        for i, (label, _, _, text1, text2) in enumerate(rows):
            item = src[i]
            assert set(item) == {"inputs", "mask", "label"}
            assert item["inputs"].shape == (2, L) and item["inputs"].dtype == np.int32
            assert item["mask"].shape == (2, L) and item["mask"].dtype == np.bool_
            assert item["label"].shape == () and item["label"].dtype == np.int32
            for k, text in enumerate((text1, text2)):
                inputs, mask = _expected(text, L)
                np.testing.assert_array_equal(item["inputs"][k], inputs)
                np.testing.assert_array_equal(item["mask"][k], mask)
            assert int(item["label"]) == int(float(label))
    first = make_source("aan", "train", data_dir=aan, max_length=4000)[0]
    assert first["inputs"].shape == (2, 4000)
    assert (
        (first["inputs"][0][first["mask"][0]] - 1)
        .astype(np.uint8)
        .tobytes()
        .startswith(b'b\'Paper 0 of train: a "quoted"')
    )
    assert not make_source("aan", "train", data_dir=aan)[2]["mask"][0].any()  # the empty text1
    assert make_source("aan", "val", data_dir=aan)[0]["inputs"].shape == (2, 4000)  # LRA's length


def test_data_aan_locations_env_home_and_line_endings(aan, tmp_path, monkeypatch):
    L = 24
    flat = tmp_path / "flat"
    _write_release(flat)
    release = tmp_path / "release"
    _write_release(release / "tsv_data", newline="\r\n")
    moved = tmp_path / "moved"  # the folder moved up a level, as some setup scripts do
    _write_release(moved / "lra_release" / "tsv_data")
    home = tmp_path / "home"
    home.mkdir()
    os.symlink(aan, home / "lra")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("SEQKIT_DATA", str(flat))
    ref = make_source("aan", "test", data_dir=aan, max_length=L)
    others = [
        make_source("aan", "test", data_dir=flat, max_length=L),
        make_source("aan", "test", data_dir=release, max_length=L),  # DIR/tsv_data, CRLF lines
        make_source("aan", "test", data_dir=moved, max_length=L),  # DIR/lra_release/tsv_data
        make_source("aan", "test", data_dir=aan / RELEASED, max_length=L),
        make_source("aan", "test", max_length=L),  # $SEQKIT_DATA
        AanSource("test", data_dir="~/lra", max_length=L),
    ]
    assert others[-1].path == str(home / "lra" / RELEASED / NAMES["test"])
    for i in range(len(ref)):
        for other in others:
            for k in ("inputs", "mask", "label"):
                np.testing.assert_array_equal(ref[i][k], other[i][k])
    three = make_source("aan", "train", data_dir=aan, size=3)
    assert len(three) == 3 and int(three[1]["label"]) == 1
    with pytest.raises(ValueError, match=r"expected 0 <= size <= 7 \(the train split\), got 8"):
        make_source("aan", "train", data_dir=aan, size=8)
    with pytest.raises(ValueError, match="accepted: max_length"):
        make_source("aan", "train", data_dir=aan, seq_len=8)


def test_data_aan_pickles_small_and_batches(aan):
    src = make_source("aan", "train", data_dir=aan, max_length=32)
    src[0]  # opens the memory map, which must not travel
    blob = pickle.dumps(src)
    assert len(blob) < 2000
    copy = pickle.loads(blob)
    for i in range(len(src)):
        np.testing.assert_array_equal(copy[i]["inputs"], src[i]["inputs"])
    got = list(itertools.islice(batches(src, batch_size=3, seed=0), 5))
    for b in got:
        assert b["inputs"].shape == (3, 2, 32) and b["inputs"].dtype == np.int32
        assert b["mask"].shape == (3, 2, 32) and b["mask"].dtype == np.bool_
        assert b["label"].shape == (3,) and b["label"].dtype == np.int32
        np.testing.assert_array_equal(b["mask"], b["inputs"] > 0)


@pytest.mark.slow  # a worker process takes seconds to start
def test_data_aan_worker_process(aan):
    # a worker process unpickles the source, reads the file's offsets again and maps it
    src = make_source("aan", "train", data_dir=aan, max_length=32)
    threads = list(itertools.islice(batches(src, batch_size=3, seed=0), 5))
    procs = list(itertools.islice(batches(src, batch_size=3, seed=0, worker_count=1), 5))
    for a, b in zip(threads, procs, strict=True):
        for k in ("inputs", "mask", "label"):
            np.testing.assert_array_equal(a[k], b[k])


def test_data_aan_missing_says_where(tmp_path, monkeypatch):
    monkeypatch.delenv("SEQKIT_DATA", raising=False)
    with pytest.raises(DataNotFoundError) as e:
        make_source("aan", "train")
    msg = str(e.value)
    assert re.findall(r"`--set (\S+=DIR)`", msg) == ["data.data_dir=DIR"]
    assert "environment variable SEQKIT_DATA=DIR" in msg and URL in msg
    with pytest.raises(DataNotFoundError) as e:
        make_source("aan", "val", data_dir=tmp_path)
    msg = str(e.value)
    assert "\n" not in msg and URL in msg
    assert str(tmp_path / RELEASED / NAMES["train"]) in msg
    # one file of three: the others are named where the first was found
    _write_tsv(tmp_path / "tsv_data" / NAMES["train"], _rows("train"))
    assert len(make_source("aan", "train", data_dir=tmp_path)) == SIZES["train"]
    with pytest.raises(DataNotFoundError) as e:
        make_source("aan", "val", data_dir=tmp_path)
    assert str(e.value).startswith(f"{tmp_path / 'tsv_data' / NAMES['val']} is missing (the AAN val pairs); ")


def test_data_aan_advice_is_accepted_by_recipes(aan, monkeypatch):
    monkeypatch.delenv("SEQKIT_DATA", raising=False)
    with pytest.raises(DataNotFoundError) as e:
        make_source("aan", "test")
    (setting,) = re.findall(r"`--set (data\.data_dir=DIR)`", str(e.value))
    recipe = override(recipes.get("s4-scifar"), ["data.name=aan", setting.replace("DIR", str(aan))])
    sources = recipe.make_sources()
    assert {s: len(src) for s, src in sources.items()} == SIZES
    monkeypatch.setenv("SEQKIT_DATA", str(aan))
    assert len(override(recipes.get("s4-scifar"), ["data.name=aan"]).make_sources()["val"]) == SIZES["val"]


def _bad(lines: list[bytes]) -> bytes:
    return b"\n".join(lines) + b"\n"


GOOD = b"1\tA\tB\tb'one'\tb'two'"


@pytest.mark.parametrize(
    "content, line, expected",
    [
        (
            _bad([GOOD, b"0\tA\tB\tonly four"]),
            2,
            "expected 5 tab-separated columns (label, id1, id2, text1, text2), got 4",
        ),
        (
            _bad([GOOD, GOOD, GOOD + b"\textra"]),
            3,
            "expected 5 tab-separated columns (label, id1, id2, text1, text2), got 6",
        ),
        (
            _bad([b"label\tid1\tid2\ttext1\ttext2", GOOD]),
            1,
            "expected the label 0 or 1 in column 1, got b'label'",
        ),
        (_bad([GOOD, b"2\tA\tB\tx\ty"]), 2, "expected the label 0 or 1 in column 1, got b'2'"),
        (_bad([GOOD, b"0.5\tA\tB\tx\ty"]), 2, "expected the label 0 or 1 in column 1, got b'0.5'"),
        (_bad([GOOD, b"nan\tA\tB\tx\ty"]), 2, "expected the label 0 or 1 in column 1, got b'nan'"),
        (np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes(), 1, "expected "),
    ],
)
def test_data_aan_bad_rows(tmp_path, content, line, expected):
    path = tmp_path / NAMES["test"]
    path.write_bytes(content)
    with pytest.raises(DataError) as e:
        make_source("aan", "test", data_dir=tmp_path)  # at construction, not on first item
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(f"{path}, line {line}: {expected}")
    assert f"the file is truncated or not LRA's {NAMES['test']}" in msg and URL in msg


def test_data_aan_truncated_empty_and_changed_files(tmp_path):
    path = tmp_path / NAMES["train"]
    _write_tsv(path, _rows("train"))
    raw = path.read_bytes()
    cut = raw.index(b"P03-train") + 3  # cut inside line 4's id1
    path.write_bytes(raw[:cut])
    with pytest.raises(DataError, match=re.escape(f"{path}, line 4: expected 5 tab-separated columns")):
        make_source("aan", "train", data_dir=tmp_path)
    path.write_bytes(b"")
    with pytest.raises(DataError, match=re.escape(f"{path} holds no pairs: expected lines of label, id1")):
        make_source("aan", "train", data_dir=tmp_path)
    path.write_bytes(raw)
    src = make_source("aan", "train", data_dir=tmp_path)
    path.write_bytes(raw + GOOD + b"\n")  # rewritten after the source read it
    with pytest.raises(DataError, match=re.escape(f"{path} changed after it was read")):
        src[0]
    assert (
        len(make_source("aan", "train", data_dir=tmp_path)) == SIZES["train"] + 1
    )  # a new source reads it again


def test_data_aan_check_files(aan, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    checks = check_aan_files(empty)
    assert [(c.path, c.present) for c in checks] == [
        (str(empty / RELEASED / NAMES[s]), False) for s in ("train", "val", "test")
    ]
    assert all(URL in c.note and "label, id1, id2, text1, text2" in c.note for c in checks)
    checks = check_aan_files(aan)
    assert [(c.path, c.present) for c in checks] == [
        (str(aan / RELEASED / NAMES[s]), True) for s in ("train", "val", "test")
    ]
    (aan / RELEASED / NAMES["val"]).write_bytes(b"<html>403 Forbidden</html>\n")
    (aan / RELEASED / NAMES["test"]).unlink()
    assert [c.present for c in check_aan_files(aan)] == [True, False, False]
