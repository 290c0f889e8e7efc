"""LRA Text: IMDb movie reviews as bytes, read from the Large Movie Review archive (no downloads).

The reviews are looked up in a directory given explicitly or by the environment
variable `SEQKIT_DATA` (`~` and `$VAR` expanded), in this order:

1. `DIR/aclImdb/` (the extracted archive),
2. `DIR/` itself when it holds `train/` or `test/` with `pos/`/`neg/` inside
   (DIR is the extracted folder),
3. `DIR/aclImdb_v1.tar.gz` (read in place, without extracting).

Layout (Maas et al., ACL 2011): `aclImdb/{train,test}/{pos,neg}/<id>_<rating>.txt`,
12,500 reviews per folder; `unsup/` and the other files are ignored.

Tokens, as in LRA (Tay et al., ICLR 2021), which reads TFDS `imdb_reviews` and
encodes it with `ByteTextEncoder`: the review's bytes with leading and trailing
ASCII whitespace stripped (as TFDS does), token = byte + 1 (1..256), padding 0
(vocabulary 257), cut to `max_length` (LRA: 4096) and padded to it. Label 1 = pos.

Splits: LRA evaluated on the test set (IMDb has no validation split); here `val`
is carved from the 25k training reviews instead, so that `test` stays held out.
Each review is ranked by a hash (BLAKE2b) of `seed` and its name (`pos/0_9.txt`);
the first 10% of the training reviews by rank (2,500) are `val`, the rest (22,500)
`train`, and the 25,000 `test` reviews are in rank order too. So `train` and `val`
are disjoint for a given `seed` (use one seed for both), `size=N` takes a random
subset with both classes, and an index means the same review on every machine and
NumPy version.

Everything is read when the first source of a directory is built (once per
process), so a truncated or corrupt archive raises `DataError` (naming the file)
before any training starts.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import tarfile
import threading
import zlib
from typing import NamedTuple

import numpy as np

from seqkit._paths import expand_path

from ._cifar import DataNotFoundError, NoDataDirError
from ._files import DataError, FileCheck, archive_or_folder, one_line, split_size
from ._index import check_index

ARCHIVE = "aclImdb_v1.tar.gz"
FOLDER = "aclImdb"
ARCHIVE_URL = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
ARCHIVE_SIZE = 84_125_825  # bytes of the download at ARCHIVE_URL
ENV_VAR = "SEQKIT_DATA"
PARTS = ("train", "test")  # the archive's splits
CLASSES = ("neg", "pos")  # label = index
LAYOUT = "aclImdb/{train,test}/{pos,neg}/<id>_<rating>.txt"
MAX_LENGTH = 4096  # LRA Text
VOCAB_SIZE = 257  # 256 byte values + padding
PAD_ID = 0
VAL_FRACTION = 0.1

_MEMBER = re.compile(r"^(?:\./)?aclImdb/(train|test)/(neg|pos)/([^/]+\.txt)$")


def _resolve(data_dir: str | os.PathLike | None) -> str:
    if data_dir is None:
        data_dir = os.environ.get(ENV_VAR)
    if not data_dir:
        raise NoDataDirError("IMDb", f"{ARCHIVE} ({ARCHIVE_URL})")
    return expand_path(data_dir)


def _is_folder(path: str) -> bool:
    return any(os.path.isdir(os.path.join(path, p, c)) for p in PARTS for c in CLASSES)


def _locate(data_dir: str) -> tuple[str, str]:
    """Return ("dir", folder) or ("tar", archive path); DataNotFoundError otherwise."""
    folder = os.path.join(data_dir, FOLDER)
    archive = os.path.join(data_dir, ARCHIVE)
    # An aclImdb/ without any class folder (an extraction not begun) leaves the
    # archive in use; one with some is read, and refused when incomplete.
    if os.path.isdir(folder) and (_is_folder(folder) or not os.path.isfile(archive)):
        return "dir", folder
    if _is_folder(data_dir):
        return "dir", data_dir
    if os.path.isfile(archive):
        return "tar", archive
    raise DataNotFoundError(
        f"IMDb not found in {data_dir}: put {ARCHIVE} ({ARCHIVE_URL}) at {archive}, "
        f"or extract it so that {os.path.join(folder, 'train', 'pos')} ... "
        f"{os.path.join(folder, 'test', 'neg')} exist"
    )


class _Reviews(NamedTuple):
    """One archive split: reviews in sorted name order, their bytes back to back."""

    names: tuple[str, ...]  # "neg/0_3.txt", sorted
    labels: np.ndarray  # (n,) int32, 1 = pos
    offsets: np.ndarray  # (n + 1,) int64 into `data`
    data: np.ndarray  # uint8


def _pack(found: dict[tuple[str, str], bytes]) -> _Reviews:
    names = sorted(found)
    texts = [found[k].strip() for k in names]  # TFDS strips each review
    offsets = np.zeros(len(texts) + 1, np.int64)
    np.cumsum([len(t) for t in texts], out=offsets[1:])
    data = np.frombuffer(b"".join(texts), np.uint8)
    labels = np.array([CLASSES.index(c) for c, _ in names], np.int32)
    return _Reviews(tuple(f"{c}/{f}" for c, f in names), labels, offsets, data)


def _check_layout(found: dict[str, dict], where: str, again: str):
    missing = [f"{p}/{c}" for p in PARTS for c in CLASSES if not any(k[0] == c for k in found[p])]
    if missing:
        raise DataError(
            f"{where} does not have the IMDb layout: no reviews in {', '.join(missing)}; "
            f"expected {LAYOUT} (the Large Movie Review Dataset, {ARCHIVE_URL}); {again}"
        )


def _read_folder(folder: str) -> dict[str, _Reviews]:
    found = {p: {} for p in PARTS}
    for p in PARTS:
        for c in CLASSES:
            sub = os.path.join(folder, p, c)
            if not os.path.isdir(sub):
                continue
            for entry in os.scandir(sub):
                if entry.name.endswith(".txt") and entry.is_file():
                    with open(entry.path, "rb") as f:
                        found[p][c, entry.name] = f.read()
    _check_layout(found, folder, f"extract {ARCHIVE} again")
    return {p: _pack(found[p]) for p in PARTS}


def _read_archive(path: str) -> dict[str, _Reviews]:
    found = {p: {} for p in PARTS}
    try:
        # One forward pass, then the rest of the stream: gzip checks its length and
        # CRC only at the end, and tarfile stops quietly at a garbled header.
        with gzip.open(path, "rb") as gz, tarfile.open(fileobj=gz, mode="r:") as tar:
            for member in tar:
                m = _MEMBER.match(member.name)
                if m and member.isfile():
                    found[m[1]][m[2], m[3]] = tar.extractfile(member).read()
            while gz.read(1 << 20):
                pass
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise DataError(
            f"{path} is not a readable gzip tar archive (truncated or corrupt?): {one_line(e)}; "
            f"expected the IMDb archive {ARCHIVE} ({ARCHIVE_URL}); download it again"
        ) from None
    _check_layout(found, path, "download it again")
    return {p: _pack(found[p]) for p in PARTS}


def load_imdb(data_dir: str | os.PathLike) -> dict[str, _Reviews]:
    """Read every labelled review of `data_dir` (archive or extracted folder), by archive split."""
    kind, where = _locate(expand_path(data_dir))
    return _read_folder(where) if kind == "dir" else _read_archive(where)


# One copy per process, shared by the train/val/test sources of a directory.
_CACHE: dict[str, dict[str, _Reviews]] = {}
_LOCK = threading.Lock()


def _cached(where: tuple[str, str]) -> dict[str, _Reviews]:
    kind, path = where
    key = os.path.abspath(path)
    with _LOCK:
        if key not in _CACHE:
            _CACHE[key] = _read_folder(path) if kind == "dir" else _read_archive(path)
        return _CACHE[key]


def _rank(names: tuple[str, ...], part: str, seed: int) -> np.ndarray:
    """Indices of `names` ordered by a hash of (seed, part, name): stable across machines."""
    keys = [
        hashlib.blake2b(f"{seed}/{part}/{n}".encode(), digest_size=8).digest() + n.encode() for n in names
    ]
    return np.array(sorted(range(len(names)), key=keys.__getitem__), np.int64)


def _split_rows(reviews: dict[str, _Reviews], split: str, seed: int) -> tuple[str, np.ndarray]:
    part = "test" if split == "test" else "train"
    order = _rank(reviews[part].names, part, seed)
    if split == "test":
        return part, order
    n_val = round(len(order) * VAL_FRACTION)
    return part, order[:n_val] if split == "val" else order[n_val:]


def byte_tokens(text: np.ndarray, max_length: int) -> tuple[np.ndarray, np.ndarray]:
    """Bytes (a uint8 array) as tokens (byte + 1), cut and padded with 0 to `max_length`; and the mask."""
    raw = text[:max_length]
    inputs = np.zeros((max_length,), np.int32)
    inputs[: raw.size] = raw.astype(np.int32) + 1
    return inputs, np.arange(max_length) < raw.size


class ImdbSource:
    """Random-access source of LRA Text: IMDb reviews as byte tokens.

    Items: `inputs` int32 `(max_length,)` (byte + 1, padding 0), `mask` bool
    `(max_length,)` (True at real bytes) and `label` int32 (1 = positive).
    Splits: `train` 22,500 and `val` 2,500 reviews of the archive's training set
    (chosen by `seed`), `test` the 25,000 test reviews.

    The reviews load when the first source of a directory is built (once per
    process; a bad file raises here, not on first access) and are not pickled, so
    the source pickles small.
    """

    def __init__(
        self,
        split: str,
        *,
        data_dir: str | os.PathLike | None = None,
        seed: int = 0,
        size: int | None = None,
        max_length: int = MAX_LENGTH,
    ):
        if split not in ("train", "val", "test"):
            raise ValueError(f"expected split in ('train', 'val', 'test'), got {split!r}")
        if int(max_length) < 1:
            raise ValueError(f"expected max_length >= 1, got {max_length}")
        if int(seed) < 0:
            raise ValueError(f"expected seed >= 0, got {seed}")
        self.data_dir = _resolve(data_dir)
        self.split = split
        self.seed = int(seed)
        self.max_length = int(max_length)
        self._where = _locate(self.data_dir)  # fail now, saying what to put where
        self._part, rows = _split_rows(_cached(self._where), split, self.seed)
        rows = rows[: split_size(size, len(rows), split, f"the {split} split")]
        self._size = len(rows)
        self._rows = rows

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_rows"] = None  # recomputed from the corpus in the worker
        return state

    def __len__(self) -> int:
        return self._size

    def _row(self, i) -> int:
        i = check_index(i, self._size)
        if self._rows is None:
            self._rows = _split_rows(_cached(self._where), self.split, self.seed)[1][: self._size]
        return int(self._rows[i])

    def __getitem__(self, i):
        r = self._row(i)
        part = _cached(self._where)[self._part]
        inputs, mask = byte_tokens(part.data[part.offsets[r] : part.offsets[r + 1]], self.max_length)
        return {"inputs": inputs, "mask": mask, "label": np.int32(part.labels[r])}

    def name(self, i) -> str:
        """The archive member of item `i`, e.g. `aclImdb/train/pos/0_9.txt`."""
        return f"{FOLDER}/{self._part}/{_cached(self._where)[self._part].names[self._row(i)]}"

    def __repr__(self):
        return f"ImdbSource({self.data_dir!r}, split={self.split!r}, n={len(self)})"


def check_imdb_files(data_dir: str | os.PathLike | None = None) -> list[FileCheck]:
    """What LRA Text (IMDb) reads from `data_dir` (default `$SEQKIT_DATA`): either of two.

    The archive counts as present when it has the download's size (`ARCHIVE_SIZE`)
    and starts as a gzip file does (not read further; otherwise it is `"bad"`), the
    folder when all four `{train,test}/{pos,neg}` folders are in it.
    """
    data_dir = _resolve(data_dir)
    archive = os.path.join(data_dir, ARCHIVE)
    folder = os.path.join(data_dir, FOLDER)
    if not os.path.isdir(folder) and _is_folder(data_dir):
        folder = data_dir
    missing = [f"{p}/{c}" for p in PARTS for c in CLASSES if not os.path.isdir(os.path.join(folder, p, c))]
    return archive_or_folder(
        archive,
        f"the Large Movie Review Dataset archive ({ARCHIVE_URL}), read in place",
        ARCHIVE_SIZE,
        folder,
        missing,
        len(PARTS) * len(CLASSES),
        f"or the archive extracted: {LAYOUT} (read first when both are there)",
    )


check_files = check_imdb_files  # the name `seqkit data check` looks up in each reader module
