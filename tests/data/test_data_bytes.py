"""Byte-level LM corpora: `pytext` against the standard library files read here, and
`enwik8` / `text8` from small files written here (raw and zipped) with the expected
size shrunk, since the real ones are 10^8 bytes (no downloads)."""

import collections
import hashlib
import math
import pathlib
import pickle
import platform
import sysconfig
import zipfile

import numpy as np
import pytest

from seqkit import cli
from seqkit.data import (
    ByteSource,
    DataError,
    DataNotFoundError,
    _bytes,
    check_dataset,
    make_source,
    pytext_fingerprint,
    unigram_bits_per_byte,
)

SPLITS = ("train", "val", "test")
SMALL = (900, 50, 50)  # the fake corpora: 1,000 bytes


def _stdlib_stream() -> bytes:
    """The pytext stream, rebuilt here: each top-level stdlib *.py file by name, then b"\\n"."""
    files = sorted(pathlib.Path(sysconfig.get_path("stdlib")).glob("*.py"), key=lambda p: p.name)
    return b"".join(p.read_bytes() + b"\n" for p in files if p.is_file())


@pytest.fixture(scope="module")
def stdlib_stream():
    return _stdlib_stream()


@pytest.fixture
def small(monkeypatch):
    """Shrink the expected enwik8/text8 size to 1,000 bytes (900/50/50)."""
    monkeypatch.setattr(_bytes, "_ENWIK8_SPLITS", SMALL)
    monkeypatch.setattr(_bytes, "_TEXT8_SPLITS", SMALL)
    monkeypatch.delenv("SEQKIT_DATA", raising=False)


def _fake(corpus: str, seed: int = 0, n: int = sum(SMALL)) -> bytes:
    rng = np.random.default_rng(seed)
    if corpus == "text8":
        return bytes(rng.choice(np.frombuffer(b"abcdefghijklmnopqrstuvwxyz ", np.uint8), n))
    return bytes(rng.integers(0, 256, n, dtype=np.uint8))


def _write(folder: pathlib.Path, corpus: str, data: bytes, zipped: bool) -> pathlib.Path:
    folder.mkdir(parents=True, exist_ok=True)
    if not zipped:
        path = folder / corpus
        path.write_bytes(data)
        return path
    path = folder / f"{corpus}.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr(corpus, data)
    return path


def _assert_chunks(source, data: bytes, start: int, L: int, indices):
    for i in indices:
        item = source[i]
        a = start + i * L
        assert item["inputs"].dtype == np.int32 and item["label"].dtype == np.int32
        np.testing.assert_array_equal(item["inputs"], np.frombuffer(data[a : a + L], np.uint8))
        np.testing.assert_array_equal(item["label"], np.frombuffer(data[a + 1 : a + L + 1], np.uint8))


def test_pytext_chunks_are_the_stdlib_bytes(stdlib_stream):
    n = len(stdlib_stream)
    held = n // 20
    starts = {"train": 0, "val": n - 2 * held, "test": n - held}
    sizes = {"train": n - 2 * held, "val": held, "test": held}
    L = 64
    for split in SPLITS:
        src = make_source("pytext", split, max_length=L)
        assert isinstance(src, ByteSource) and src.vocab_size == 256
        assert len(src) == (sizes[split] - 1) // L
        assert src.bounds == (starts[split], starts[split] + sizes[split])
        _assert_chunks(src, stdlib_stream, starts[split], L, [0, 1, len(src) // 2, len(src) - 1])
        with pytest.raises(IndexError):
            src[len(src)]
    # the splits are disjoint, in order, and cover the stream: 90/5/5 by position
    streams = [make_source("pytext", s).stream().tobytes() for s in SPLITS]
    assert b"".join(streams) == stdlib_stream
    assert abs(len(streams[0]) / n - 0.9) < 1e-6 and len(streams[1]) == len(streams[2]) == held


def test_pytext_fingerprint(stdlib_stream):
    fp = pytext_fingerprint()
    assert fp["python"] == platform.python_version()
    assert fp["bytes"] == len(stdlib_stream)
    assert fp["sha256"] == hashlib.sha256(stdlib_stream).hexdigest()
    assert fp["files"] == len(list(pathlib.Path(sysconfig.get_path("stdlib")).glob("*.py")))
    assert fp["splits"]["test"][1] == len(stdlib_stream)


def test_label_is_next_byte_and_size():
    L = 37
    src = make_source("pytext", "val", max_length=L)
    for i in (0, 5, len(src) - 2):
        a, b = src[i], src[i + 1]
        np.testing.assert_array_equal(a["inputs"][1:], a["label"][:-1])
        assert a["label"][-1] == b["inputs"][0]  # chunk i ends where chunk i + 1 starts
        assert a["inputs"].shape == a["label"].shape == (L,)
    assert len(make_source("pytext", "val", max_length=L, size=10)) == 10
    assert len(make_source("pytext", "val", max_length=L, size=0)) == 0
    with pytest.raises(ValueError, match=rf"expected 0 <= size <= {len(src)} .*got {len(src) + 1}"):
        make_source("pytext", "val", max_length=L, size=len(src) + 1)
    with pytest.raises(ValueError, match="unknown option.*'seq_len'.*accepted: max_length"):
        make_source("pytext", "val", seq_len=8)
    with pytest.raises(ValueError, match="expected max_length >= 1, got 0"):
        make_source("pytext", "val", max_length=0)
    assert make_source("pytext", "train")[0]["inputs"].shape == (512,)  # the default L


@pytest.mark.parametrize("corpus", ["enwik8", "text8"])
@pytest.mark.parametrize("where", ["DIR/NAME", "DIR/NAME.zip", "DIR/NAME/NAME", "DIR/NAME/NAME.zip"])
def test_file_corpora_raw_and_zip(tmp_path, small, corpus, where):
    data = _fake(corpus, seed=len(where))
    folder = tmp_path / corpus if where.count("NAME") == 2 else tmp_path
    path = _write(folder, corpus, data, zipped=where.endswith(".zip"))
    L = 7
    for split, start, count in zip(SPLITS, (0, 900, 950), SMALL, strict=True):
        src = make_source(corpus, split, data_dir=tmp_path, max_length=L)
        assert src.path == str(path)
        assert len(src) == (count - 1) // L
        assert src.stream().tobytes() == data[start : start + count]
        _assert_chunks(src, data, start, L, [0, 1, len(src) - 1])
        # pickles small (no bytes), and the copy reads the same items
        blob = pickle.dumps(src)
        assert len(blob) < 1000
        copy = pickle.loads(blob)
        for i in (0, len(src) - 1):
            for k in ("inputs", "label"):
                np.testing.assert_array_equal(copy[i][k], src[i][k])


def test_file_corpora_default_to_seqkit_data(tmp_path, small, monkeypatch):
    data = _fake("enwik8")
    _write(tmp_path, "enwik8", data, zipped=False)
    monkeypatch.setenv("SEQKIT_DATA", str(tmp_path))
    src = make_source("enwik8", "test", max_length=10, size=3)
    assert len(src) == 3
    _assert_chunks(src, data, 950, 10, [2])


def test_raw_file_is_read_before_the_zip(tmp_path, small):
    raw, zipped = _fake("enwik8", 1), _fake("enwik8", 2)
    _write(tmp_path, "enwik8", raw, zipped=False)
    _write(tmp_path, "enwik8", zipped, zipped=True)
    src = make_source("enwik8", "train", data_dir=tmp_path, max_length=16)
    _assert_chunks(src, raw, 0, 16, [0])


def test_missing_file_names_every_place(tmp_path, small):
    with pytest.raises(DataNotFoundError) as e:
        make_source("text8", "train", data_dir=tmp_path)
    message = str(e.value)
    for place in ("text8", "text8.zip", "text8/text8", "text8/text8.zip"):
        assert str(tmp_path / place) in message
    assert "http://mattmahoney.net/dc/text8.zip" in message
    with pytest.raises(DataNotFoundError, match="no enwik8 data directory given.*SEQKIT_DATA"):
        make_source("enwik8", "train")


def test_wrong_size_and_bad_archives(tmp_path, small):
    path = _write(tmp_path / "a", "enwik8", _fake("enwik8", n=999), zipped=False)
    with pytest.raises(DataError, match=rf"{path}: expected a file of 1,000 bytes .*got 999 bytes"):
        make_source("enwik8", "train", data_dir=tmp_path / "a")
    path = _write(tmp_path / "b", "text8", _fake("text8", n=1234), zipped=True)
    with pytest.raises(DataError, match=rf"{path}: expected the member 'text8' of 1,000 bytes .*got 1,234"):
        make_source("text8", "val", data_dir=tmp_path / "b")
    path = tmp_path / "c" / "enwik8.zip"
    path.parent.mkdir()
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("other", b"x" * 1000)
    with pytest.raises(DataError, match=rf"{path} has no member 'enwik8' \(it has \['other'\]\)"):
        make_source("enwik8", "val", data_dir=path.parent)
    path.write_bytes(b"not a zip at all")
    with pytest.raises(DataError, match=rf"{path} is not a readable zip archive"):
        make_source("enwik8", "val", data_dir=path.parent)


def test_unigram_bits_per_byte(tmp_path, small, stdlib_stream):
    # two byte values, equally frequent in every split: exactly one bit
    data = bytes([ord("a"), ord("b")] * 500)
    _write(tmp_path, "text8", data, zipped=False)
    for split in SPLITS:
        assert unigram_bits_per_byte(make_source("text8", split, data_dir=tmp_path)) == 1.0
    # pytext val against the entropy computed here from the bytes
    n = len(stdlib_stream)
    val = stdlib_stream[n - 2 * (n // 20) : n - n // 20]
    counts = collections.Counter(val)
    expected = -sum(c / len(val) * math.log2(c / len(val)) for c in counts.values())
    src = make_source("pytext", "val", size=1)  # size does not change the split's stream
    assert unigram_bits_per_byte(src) == pytest.approx(expected, rel=1e-12)
    assert 3.0 < expected < 6.0  # source text: far below 8 bits
    with pytest.raises(TypeError, match="ByteSource"):  # (the test run also type-checks)
        unigram_bits_per_byte([b"ab"])


def test_check_enwik8_lists_the_files(tmp_path, small, capsys):
    path = _write(tmp_path, "enwik8", _fake("enwik8"), zipped=True)
    report = check_dataset("enwik8", tmp_path)
    assert [f.path for f in report.files] == [
        str(tmp_path / p) for p in ("enwik8", "enwik8.zip", "enwik8/enwik8", "enwik8/enwik8.zip")
    ]
    assert [f.status for f in report.files] == ["missing", "ok", "missing", "missing"]
    # each place is named as what it is (the first, preferred one with no leading "or")
    assert [f.note for f in report.files[::2]] == ["enwik8 unzipped from enwik8.zip, memory-mapped"] * 2
    assert report.complete and report.summary == f"enwik8: ready ({path} is there)"
    assert cli.main(["data", "check", "enwik8", "--data-dir", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split()[:2] == ["ok", str(path)]
    # a raw file of the wrong size is read first, so the archive is not used
    (tmp_path / "enwik8").write_bytes(b"short")
    report = check_dataset("enwik8", tmp_path)
    assert [f.status for f in report.files] == ["bad", "unused", "missing", "missing"]
    assert "expected a file of 1,000 bytes" in report.files[0].note and "got 5 bytes" in report.files[0].note
    assert f"not used while {tmp_path / 'enwik8'} is there" in report.files[1].note
    assert not report.complete
    assert cli.main(["data", "check", "text8", "--data-dir", str(tmp_path)]) == 1
    capsys.readouterr()


def test_check_pytext_needs_nothing():
    report = check_dataset("pytext")
    assert report.complete
    assert [f.path for f in report.files] == [sysconfig.get_path("stdlib")]
    assert "no data directory needed" in report.files[0].note
