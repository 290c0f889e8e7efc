"""LRA Retrieval: pairs of ACL Anthology Network papers as bytes, read from LRA's released TSV files.

The files of the LRA release (`lra_release.gz`, extracted) are looked up in a
directory given explicitly or by the environment variable `SEQKIT_DATA` (`~` and
`$VAR` expanded): in `DIR/lra_release/lra_release/tsv_data/` (where extracting
`lra_release.gz` in `DIR` puts them), `DIR/lra_release/tsv_data/`, `DIR/tsv_data/`
or `DIR/`, the first of these that holds any of them.

| split | file |
|---|---|
| `train` | `new_aan_pairs.train.tsv` |
| `val` | `new_aan_pairs.eval.tsv` |
| `test` | `new_aan_pairs.test.tsv` |

Format, as LRA's `lra_benchmarks/matching/input_pipeline.py` reads it: one pair per
line, five tab-separated columns `label, id1, id2, text1, text2`, no header, no
quoting (a `"` is an ordinary byte); the label is read as a number (0 or 1: do the
two papers cite each other). Blank lines are skipped.

Tokens, as LRA's byte-level setting (`tokenizer="char"`, `ByteTextEncoder`): each
text field's bytes exactly as stored in the file, token = byte + 1 (1..256),
padding 0 (vocabulary 257), cut to `max_length` (LRA: 4000) and padded to it.

Every line is checked when the first source of a file is built (once per process;
a bad row raises `DataError` naming the file and line); the texts are then read
from a memory map of the file, which opens lazily, so the source pickles small.
"""

from __future__ import annotations

import os
import threading
from typing import NamedTuple

import numpy as np

from seqkit._paths import expand_path

from ._cifar import DataNotFoundError, NoDataDirError
from ._files import DataError, FileCheck, split_size
from ._imdb import byte_tokens
from ._index import check_index

FILES = {
    "train": "new_aan_pairs.train.tsv",
    "val": "new_aan_pairs.eval.tsv",
    "test": "new_aan_pairs.test.tsv",
}
# The archive's own layout first (lra_release/lra_release/tsv_data), then the folder
# moved up a level (as some setup scripts do), or the files on their own.
SUBDIRS = (
    os.path.join("lra_release", "lra_release", "tsv_data"),
    os.path.join("lra_release", "tsv_data"),
    "tsv_data",
    "",
)
RELEASE = "lra_release.gz"
RELEASE_URL = "https://storage.googleapis.com/long-range-arena/lra_release.gz"
ENV_VAR = "SEQKIT_DATA"
COLUMNS = ("label", "id1", "id2", "text1", "text2")
MAX_LENGTH = 4000  # LRA Retrieval, per document
VOCAB_SIZE = 257
PAD_ID = 0

_AGAIN = f"extract it again from {RELEASE} ({RELEASE_URL}, lra_release/lra_release/tsv_data/)"


def _resolve(data_dir: str | os.PathLike | None) -> str:
    if data_dir is None:
        data_dir = os.environ.get(ENV_VAR)
    if not data_dir:
        raise NoDataDirError("AAN", f"{RELEASE} ({RELEASE_URL}) extracted")
    return expand_path(data_dir)


def _folder(data_dir: str) -> str | None:
    """The first candidate folder holding any of the three files."""
    for sub in SUBDIRS:
        folder = os.path.join(data_dir, sub) if sub else data_dir
        if any(os.path.isfile(os.path.join(folder, f)) for f in FILES.values()):
            return folder
    return None


def _locate(data_dir: str, split: str) -> str:
    folder = _folder(data_dir)
    if folder is None:
        default = os.path.join(data_dir, SUBDIRS[0])
        raise DataNotFoundError(
            f"AAN pairs not found in {data_dir}: extract {RELEASE} ({RELEASE_URL}) in {data_dir} "
            f"so that {os.path.join(default, FILES['train'])} (and .eval.tsv, .test.tsv) exist, "
            f"or put the three new_aan_pairs.*.tsv files in {data_dir}"
        )
    path = os.path.join(folder, FILES[split])
    if not os.path.isfile(path):
        raise DataNotFoundError(f"{path} is missing (the AAN {split} pairs); {_AGAIN}")
    return path


class _Pairs(NamedTuple):
    """Where each pair's texts lie in the file (byte offsets and lengths) and its label."""

    starts: np.ndarray  # (n, 2) int64
    lengths: np.ndarray  # (n, 2) int64
    labels: np.ndarray  # (n,) int32


def _bad_row(path: str, line: int, what: str) -> DataError:
    name = os.path.basename(path)
    return DataError(f"{path}, line {line}: {what}; the file is truncated or not LRA's {name}; {_AGAIN}")


def _label(field: bytes, path: str, line: int) -> int:
    try:
        value = float(field)  # LRA reads the column as a float and casts it to int32
    except ValueError:
        value = None
    if value not in (0.0, 1.0):
        raise _bad_row(path, line, f"expected the label 0 or 1 in column 1, got {field[:20]!r}")
    return int(value)


def _read_pairs(path: str | os.PathLike) -> _Pairs:
    """Check every line of one pairs file; the offsets and lengths of its texts, and its labels."""
    path = expand_path(path)
    starts, lengths, labels = [], [], []
    pos = 0
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            line = raw[:-1] if raw.endswith(b"\n") else raw
            if line.endswith(b"\r"):
                line = line[:-1]
            if line:
                fields = line.split(b"\t")
                if len(fields) != len(COLUMNS):
                    raise _bad_row(
                        path,
                        number,
                        f"expected {len(COLUMNS)} tab-separated columns ({', '.join(COLUMNS)}), "
                        f"got {len(fields)}",
                    )
                labels.append(_label(fields[0], path, number))
                first = pos + sum(len(x) + 1 for x in fields[:3])
                starts.append((first, first + len(fields[3]) + 1))
                lengths.append((len(fields[3]), len(fields[4])))
            pos += len(raw)
    if not labels:
        raise DataError(f"{path} holds no pairs: expected lines of {', '.join(COLUMNS)}; {_AGAIN}")
    return _Pairs(
        np.array(starts, np.int64).reshape(-1, 2),
        np.array(lengths, np.int64).reshape(-1, 2),
        np.array(labels, np.int32),
    )


# One copy per process and version of a file (a rewritten file is read again).
_CACHE: dict[tuple[str, tuple[int, int]], _Pairs] = {}
_LOCK = threading.Lock()


def _stamp(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns


def _changed(path: str) -> DataError:
    return DataError(f"{path} changed after it was read; build the source again")


def _cached(path: str, stamp: tuple[int, int]) -> _Pairs:
    key = (os.path.abspath(path), stamp)
    with _LOCK:
        if key not in _CACHE:
            if _stamp(path) != stamp:  # e.g. in a worker process, after the file was replaced
                raise _changed(path)
            _CACHE[key] = _read_pairs(path)
        return _CACHE[key]


class AanSource:
    """Random-access source of LRA Retrieval: pairs of AAN papers as byte tokens.

    Items: `inputs` int32 `(2, max_length)` (the two papers, byte + 1, padding 0),
    `mask` bool `(2, max_length)` (True at real bytes) and `label` int32 (1: the
    papers are linked by a citation). `val` is LRA's `eval` file. `size=N` takes the
    first N pairs of the file.

    The line offsets are read when the first source of a file is built (once per
    process; a bad row raises here, not on first access); the file itself is
    memory-mapped on first access and not pickled.
    """

    def __init__(
        self,
        split: str,
        *,
        data_dir: str | os.PathLike | None = None,
        size: int | None = None,
        max_length: int = MAX_LENGTH,
    ):
        if split not in FILES:
            raise ValueError(f"expected split in ('train', 'val', 'test'), got {split!r}")
        if int(max_length) < 1:
            raise ValueError(f"expected max_length >= 1, got {max_length}")
        self.data_dir = _resolve(data_dir)
        self.split = split
        self.max_length = int(max_length)
        self.path = _locate(self.data_dir, split)
        self._stamp = _stamp(self.path)
        available = len(_cached(self.path, self._stamp).labels)
        self._size = split_size(size, available, split, f"the {split} split")
        self._map = None
        self._pairs = None

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_map"] = state["_pairs"] = None
        return state

    def _open(self):
        self._pairs = _cached(self.path, self._stamp)
        if _stamp(self.path) != self._stamp:
            raise _changed(self.path)
        self._map = np.memmap(self.path, np.uint8, mode="r")

    def __len__(self) -> int:
        return self._size

    def __getitem__(self, i):
        i = check_index(i, self._size)
        if self._map is None:
            self._open()
        data, pairs = self._map, self._pairs
        inputs = np.zeros((2, self.max_length), np.int32)
        mask = np.zeros((2, self.max_length), bool)
        for k in range(2):
            start = int(pairs.starts[i, k])
            n = min(int(pairs.lengths[i, k]), self.max_length)
            inputs[k], mask[k] = byte_tokens(data[start : start + n], self.max_length)
        return {"inputs": inputs, "mask": mask, "label": np.int32(pairs.labels[i])}

    def __repr__(self):
        return f"AanSource({self.path!r}, split={self.split!r}, n={len(self)})"


def _looks_right(path: str) -> bool:
    """The first line has five tab-separated columns and a 0/1 label (the rest is not read)."""
    try:
        with open(path, "rb") as f:
            fields = f.readline().rstrip(b"\r\n").split(b"\t")
        _label(fields[0], path, 1)
    except (OSError, DataError):
        return False
    return len(fields) == len(COLUMNS)


def check_aan_files(data_dir: str | os.PathLike | None = None) -> list[FileCheck]:
    """What LRA Retrieval (AAN) reads from `data_dir` (default `$SEQKIT_DATA`): three TSV files.

    A file counts as present when its first line looks like a pair (the rest is
    checked when a source is built).
    """
    data_dir = _resolve(data_dir)
    folder = _folder(data_dir) or os.path.join(data_dir, SUBDIRS[0])
    return [_check_pairs(os.path.join(folder, name), split) for split, name in FILES.items()]


def _check_pairs(path: str, split: str) -> FileCheck:
    """One AAN file as `seqkit data check` reports it: `"bad"` when it is there but
    its first line is not a pair."""
    note = (
        f"AAN {split} pairs ({', '.join(COLUMNS)}; tab-separated), lra_release/lra_release/tsv_data/ "
        f"of {RELEASE} ({RELEASE_URL})"
    )
    if _looks_right(path):
        return FileCheck(path, True, note)
    if os.path.isfile(path):
        return FileCheck(path, False, f"there, but its first line is not a pair; expected {note}", "bad")
    return FileCheck(path, False, note)


check_files = check_aan_files  # the name `seqkit data check` looks up in each reader module
