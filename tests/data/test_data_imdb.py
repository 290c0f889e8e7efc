"""LRA Text (IMDb bytes) from small archives and folders in the real aclImdb layout (no downloads)."""

import io
import itertools
import os
import pickle
import re
import tarfile

import numpy as np
import pytest

from seqkit import recipes
from seqkit.data import (
    DataError,
    DataNotFoundError,
    ImdbSource,
    _imdb,
    batches,
    check_imdb_files,
    make_source,
)
from seqkit.train import override

ARCHIVE = "aclImdb_v1.tar.gz"
URL = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
N_TRAIN, N_TEST = 10, 6  # reviews per class


def _reviews():
    """{"train/pos/3_8.txt": bytes, ...}: varied texts, some with whitespace to strip."""
    out = {}
    for part, n in (("train", N_TRAIN), ("test", N_TEST)):
        for cls in ("pos", "neg"):
            for i in range(n):
                text = f"{cls} review {i} of {part}: " + "great film! <br /><br />" * (i % 4)
                if i == 1:
                    text = f"  \n\tAmélie – 🎬 {cls} {part}\n  "  # UTF-8 bytes, stripped ends
                if i == 2:
                    text = "x" * 100 + f" {cls}"  # longer than the short max_length below
                out[f"{part}/{cls}/{i * 7}_{1 + i % 10}.txt"] = text.encode("utf-8")
    return out


def _extras():
    """Files of the real archive that the reader must ignore."""
    return {
        "train/unsup/0_0.txt": b"unlabelled",
        "train/urls_pos.txt": b"http://www.imdb.com/title/tt0453418/usercomments",
        "train/labeledBow.feat": b"9 0:9 1:1",
        "imdb.vocab": b"the\nand\n",
        "README": b"Large Movie Review Dataset v1.0",
    }


def _write_folder(root, files):
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def _write_archive(path, files):
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(f"aclImdb/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path.read_bytes()


@pytest.fixture
def imdb(tmp_path):
    files = _reviews()
    _write_archive(tmp_path / "tar" / ARCHIVE, {**files, **_extras()})
    _write_folder(tmp_path / "dir" / "aclImdb", {**files, **_extras()})
    return tmp_path, files


def _expected(text: bytes, max_length: int):
    """The LRA byte encoding, computed independently: stripped bytes + 1, zero-padded."""
    ids = [b + 1 for b in text.strip()][:max_length]
    return np.array(ids + [0] * (max_length - len(ids))), np.array(
        [True] * len(ids) + [False] * (max_length - len(ids))
    )


def test_data_imdb_tokens_labels_and_masks(imdb):
    root, files = imdb
    L = 64
    for split in ("train", "val", "test"):
        src = make_source("imdb", split, data_dir=root / "tar", max_length=L)
        for i in range(len(src)):
            item = src[i]
            assert set(item) == {"inputs", "mask", "label"}
            assert item["inputs"].shape == (L,) and item["inputs"].dtype == np.int32
            assert item["mask"].shape == (L,) and item["mask"].dtype == np.bool_
            assert item["label"].shape == () and item["label"].dtype == np.int32
            name = src.name(i)
            part, cls = name.split("/")[1:3]
            assert part == ("test" if split == "test" else "train")
            inputs, mask = _expected(files[name.removeprefix("aclImdb/")], L)
            np.testing.assert_array_equal(item["inputs"], inputs)
            np.testing.assert_array_equal(item["mask"], mask)
            assert int(item["label"]) == (cls == "pos")
    # the UTF-8 review: multi-byte characters become several tokens, ends stripped
    test = make_source("imdb", "test", data_dir=root / "tar", max_length=L)
    (k,) = [i for i in range(len(test)) if test.name(i) == "aclImdb/test/pos/7_2.txt"]
    text = "Amélie – 🎬 pos test".encode()
    assert int(test[k]["mask"].sum()) == len(text) == len("Amélie – 🎬 pos test") + 1 + 2 + 3
    assert test[k]["inputs"][0] == ord("A") + 1 and test[k]["inputs"][len(text) - 1] == ord("t") + 1


def test_data_imdb_splits_disjoint_and_seeded(imdb):
    root, files = imdb
    d = root / "tar"
    names = {
        s: [
            make_source("imdb", s, data_dir=d).name(i) for i in range(len(make_source("imdb", s, data_dir=d)))
        ]
        for s in ("train", "val", "test")
    }
    n_val = round(2 * N_TRAIN * 0.1)
    assert [len(names[s]) for s in ("train", "val", "test")] == [2 * N_TRAIN - n_val, n_val, 2 * N_TEST]
    assert not set(names["train"]) & set(names["val"])
    train_files = {f"aclImdb/{k}" for k in files if k.startswith("train/")}
    test_files = {f"aclImdb/{k}" for k in files if k.startswith("test/")}
    assert set(names["train"]) | set(names["val"]) == train_files
    assert set(names["test"]) == test_files and len(names["test"]) == len(test_files)
    # the order is a seeded permutation, not the sorted names (so `size` mixes classes)
    assert names["test"] != sorted(names["test"])
    # deterministic: same seed, same order; another seed, another val set
    again = make_source("imdb", "val", data_dir=root / "dir", seed=0)
    assert [again.name(i) for i in range(len(again))] == names["val"]
    vals = {
        tuple(sorted(make_source("imdb", "val", data_dir=d, seed=s).name(i) for i in range(n_val)))
        for s in range(6)
    }
    assert len(vals) > 1
    other = make_source("imdb", "train", data_dir=d, seed=3)
    other_val = make_source("imdb", "val", data_dir=d, seed=3)
    assert not {other.name(i) for i in range(len(other))} & {other_val.name(i) for i in range(n_val)}
    # size takes the first examples of the split's order
    five = make_source("imdb", "test", data_dir=d, size=5)
    assert len(five) == 5 and [five.name(i) for i in range(5)] == names["test"][:5]
    with pytest.raises(ValueError, match=r"expected 0 <= size <= 12 \(the test split\), got 13"):
        make_source("imdb", "test", data_dir=d, size=13)
    with pytest.raises(IndexError):
        five[5]


def test_data_imdb_archive_folder_env_and_home(imdb, tmp_path, monkeypatch):
    root, _ = imdb
    L = 32
    from_tar = make_source("imdb", "train", data_dir=root / "tar", max_length=L)
    from_dir = make_source("imdb", "train", data_dir=root / "dir", max_length=L)
    from_inner = make_source("imdb", "train", data_dir=root / "dir" / "aclImdb", max_length=L)
    monkeypatch.setenv("SEQKIT_DATA", str(root / "tar"))
    from_env = make_source("imdb", "train", max_length=L)
    home = tmp_path / "home"
    home.mkdir()
    os.symlink(root / "dir", home / "data")
    monkeypatch.setenv("HOME", str(home))
    from_home = ImdbSource("train", data_dir="~/data", max_length=L)
    assert from_home.data_dir == str(home / "data")
    for i in range(len(from_tar)):
        for other in (from_dir, from_inner, from_env, from_home):
            for k in ("inputs", "mask", "label"):
                np.testing.assert_array_equal(from_tar[i][k], other[i][k])
    # default length: LRA's 4096
    assert make_source("imdb", "val", data_dir=root / "dir")[0]["inputs"].shape == (4096,)


def test_data_imdb_pickles_small_and_batches(imdb):
    root, _ = imdb
    src = make_source("imdb", "train", data_dir=root / "tar", max_length=48)
    blob = pickle.dumps(src)
    assert len(blob) < 2000  # no reviews, no index arrays
    copy = pickle.loads(blob)
    assert len(copy) == len(src)
    for i in range(len(src)):
        np.testing.assert_array_equal(copy[i]["inputs"], src[i]["inputs"])
    got = list(itertools.islice(batches(src, batch_size=4, seed=0), 5))
    for b in got:
        assert b["inputs"].shape == (4, 48) and b["inputs"].dtype == np.int32
        assert b["mask"].shape == (4, 48) and b["mask"].dtype == np.bool_
        assert b["label"].shape == (4,) and b["label"].dtype == np.int32
        np.testing.assert_array_equal(b["mask"], b["inputs"] > 0)
    # a worker process unpickles the source and reads the files again
    procs = list(itertools.islice(batches(src, batch_size=4, seed=0, worker_count=1), 5))
    for a, b in zip(got, procs, strict=True):
        for k in ("inputs", "mask", "label"):
            np.testing.assert_array_equal(a[k], b[k])


def test_data_imdb_missing_says_where(tmp_path, monkeypatch):
    monkeypatch.delenv("SEQKIT_DATA", raising=False)
    with pytest.raises(DataNotFoundError) as e:
        make_source("imdb", "train")
    msg = str(e.value)
    assert re.findall(r"`--set (\S+=DIR)`", msg) == ["data.data_dir=DIR"]
    assert "environment variable SEQKIT_DATA=DIR" in msg and URL in msg
    with pytest.raises(DataNotFoundError) as e:
        make_source("imdb", "test", data_dir=tmp_path)
    msg = str(e.value)
    assert "\n" not in msg
    assert str(tmp_path / ARCHIVE) in msg and URL in msg
    assert str(tmp_path / "aclImdb" / "train" / "pos") in msg


def test_data_imdb_advice_is_accepted_by_recipes(imdb, monkeypatch):
    root, _ = imdb
    monkeypatch.delenv("SEQKIT_DATA", raising=False)
    with pytest.raises(DataNotFoundError) as e:
        make_source("imdb", "val")
    (setting,) = re.findall(r"`--set (data\.data_dir=DIR)`", str(e.value))
    recipe = override(recipes.get("s4-scifar"), ["data.name=imdb", setting.replace("DIR", str(root / "tar"))])
    sources = recipe.make_sources()
    n_val = round(2 * N_TRAIN * 0.1)
    assert [len(sources[s]) for s in ("train", "val", "test")] == [2 * N_TRAIN - n_val, n_val, 2 * N_TEST]
    monkeypatch.setenv("SEQKIT_DATA", str(root / "dir"))
    assert len(override(recipes.get("s4-scifar"), ["data.name=imdb"]).make_sources()["test"]) == 2 * N_TEST


def _damage(raw: bytes, how: str) -> bytes:
    if how == "garbage":
        return np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    if how == "empty":
        return b""
    if how == "flipped":  # one corrupt byte in the middle: only gzip's CRC notices
        b = bytearray(raw)
        b[len(b) // 2] ^= 0xFF
        return bytes(b)
    return raw[: int(how)] if int(how) >= 0 else raw[: len(raw) + int(how)]


@pytest.mark.parametrize("how", ["garbage", "empty", "flipped", "10", "300", "-200", "-4"])
def test_data_imdb_bad_archive(tmp_path, how):
    raw = _write_archive(tmp_path / "good" / ARCHIVE, {**_reviews(), **_extras()})
    bad = tmp_path / "bad" / ARCHIVE
    bad.parent.mkdir()
    bad.write_bytes(_damage(raw, how))
    with pytest.raises(DataError) as e:
        make_source("imdb", "train", data_dir=bad.parent)  # at construction, not on first item
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(f"{bad} is not a readable gzip tar archive (truncated or corrupt?): ")
    assert f"expected the IMDb archive {ARCHIVE} ({URL}); download it again" in msg
    assert os.listdir(bad.parent) == [ARCHIVE]  # nothing extracted next to it


def test_data_imdb_wrong_layout(tmp_path):
    # an archive of something else: no aclImdb/{train,test}/{pos,neg}/*.txt
    other = {"train/unsup/0_0.txt": b"x", "README": b"not the reviews"}
    _write_archive(tmp_path / "a" / ARCHIVE, other)
    with pytest.raises(DataError) as e:
        make_source("imdb", "val", data_dir=tmp_path / "a")
    msg = str(e.value)
    assert msg.startswith(f"{tmp_path / 'a' / ARCHIVE} does not have the IMDb layout: ")
    assert "no reviews in train/neg, train/pos, test/neg, test/pos;" in msg
    assert "expected aclImdb/{train,test}/{pos,neg}/<id>_<rating>.txt" in msg
    # an extracted folder lacking the test reviews
    train_only = {k: v for k, v in _reviews().items() if k.startswith("train/")}
    _write_folder(tmp_path / "b" / "aclImdb", train_only)
    with pytest.raises(DataError) as e:
        make_source("imdb", "train", data_dir=tmp_path / "b")
    msg = str(e.value)
    assert msg.startswith(f"{tmp_path / 'b' / 'aclImdb'} does not have the IMDb layout: ")
    assert "no reviews in test/neg, test/pos;" in msg and f"extract {ARCHIVE} again" in msg


def test_data_imdb_bad_options(imdb):
    root, _ = imdb
    with pytest.raises(ValueError, match="accepted: max_length"):
        make_source("imdb", "train", data_dir=root / "dir", seq_len=10)
    with pytest.raises(ValueError, match="expected max_length >= 1, got 0"):
        make_source("imdb", "train", data_dir=root / "dir", max_length=0)


def test_data_imdb_check_files(imdb, tmp_path, monkeypatch):
    root, _ = imdb
    # The check compares the archive's size with the download's: this small one is "bad".
    (bad, _) = check_imdb_files(root / "tar")
    assert bad.status == "bad" and "expected 84,125,825 bytes (the standard archive)" in bad.note
    monkeypatch.setattr(_imdb, "ARCHIVE_SIZE", os.path.getsize(root / "tar" / ARCHIVE))
    empty = tmp_path / "empty"
    empty.mkdir()
    checks = check_imdb_files(empty)
    assert [(c.path, c.present) for c in checks] == [
        (str(empty / ARCHIVE), False),
        (str(empty / "aclImdb"), False),
    ]
    assert URL in checks[0].note and "aclImdb/{train,test}/{pos,neg}" in checks[1].note
    assert [c.present for c in check_imdb_files(root / "tar")] == [True, False]
    assert [c.present for c in check_imdb_files(root / "dir")] == [False, True]
    inner = check_imdb_files(root / "dir" / "aclImdb")  # DIR is the extracted folder
    assert inner[1] == (str(root / "dir" / "aclImdb"), True, inner[1].note, "")
    (empty / ARCHIVE).write_bytes(b"not gzip")
    assert [c.status for c in check_imdb_files(empty)] == ["bad", "missing"]


def test_data_imdb_archive_beside_an_empty_or_incomplete_folder(imdb, monkeypatch):
    root, _ = imdb
    tar = root / "tar"
    monkeypatch.setattr(_imdb, "ARCHIVE_SIZE", os.path.getsize(tar / ARCHIVE))  # the check's size
    ref = make_source("imdb", "test", data_dir=tar, max_length=16)
    # An aclImdb/ with no class folder yet (an extraction not begun): the archive is read.
    (tar / "aclImdb").mkdir()
    src = make_source("imdb", "test", data_dir=tar, max_length=16)
    assert [src[i]["inputs"].tolist() for i in range(len(src))] == [
        ref[i]["inputs"].tolist() for i in range(len(ref))
    ]
    assert [c.present for c in check_imdb_files(tar)] == [True, False]
    # One with some class folders is read first, and refused; the check says so.
    train_only = {k: v for k, v in _reviews().items() if k.startswith("train/")}
    _write_folder(tar / "aclImdb", train_only)
    with pytest.raises(DataError, match="does not have the IMDb layout"):
        make_source("imdb", "test", data_dir=tar)
    archive, folder = check_imdb_files(tar)
    assert archive.status == "unused" and "not used while the incomplete folder below" in archive.note
    assert not folder.present and folder.note.endswith("; lacks test/neg, test/pos")
