"""Byte-level language-modeling corpora: `pytext` (the Python standard library's
source, no download), `enwik8` and `text8` (read from files, no download).

Every corpus is one stream of bytes, split by position into `train`, `val` and
`test`. Example `i` of a split is the chunk of `L + 1` consecutive bytes starting
at byte `i L` (`L = max_length`, default 512; consecutive chunks share one byte, a
chunk's last label being the next chunk's first input): `inputs` are the chunk's first
`L` bytes and `label` its last `L` (the next byte at every position), both int32
`(L,)` with values 0..255 (vocabulary 256). A split of `n` bytes has
`(n - 1) // L` full chunks; the few bytes after the last are not used.

- `pytext`: every top-level `*.py` file of `sysconfig.get_path("stdlib")`, sorted by
  file name, each file's bytes followed by one `b"\\n"`, concatenated (about 4.7 MB on
  CPython 3.11). Split by position: `val` and `test` are `n // 20` bytes each (5%),
  `train` the first `n - 2 (n // 20)` (90%). The bytes depend on the Python
  installation (its version and build); `pytext_fingerprint()` gives the version
  and the stream's SHA-256, to say what a result was trained on.
- `enwik8`: the first 10^8 bytes of an English Wikipedia XML dump (the Hutter
  Prize corpus); `text8`: the first 10^8 bytes of the same dump's first 10^9 bytes
  (enwik9) after Matt Mahoney's `wikifil.pl` (markup removed, lowercased, digits
  spelled out, everything else a space: only `a`-`z` and space). Both split as is
  usual for them: the first 90,000,000 bytes `train`, the next 5,000,000 `val`, the last 5,000,000 `test`.

`enwik8` and `text8` are looked up in a directory given explicitly or by the
environment variable `SEQKIT_DATA` (`~` and `$VAR` expanded), in this order:
`DIR/NAME` (the raw file), `DIR/NAME.zip` (the published archive, holding a member
`NAME`), `DIR/NAME/NAME`, `DIR/NAME/NAME.zip`; the first that exists is read. The
raw file is memory-mapped (nothing is read until used). An archive's member is
decompressed into memory once per process (10^8 bytes of memory and the time to
inflate them in every process, grain workers included): unzip it once to avoid that.
"""

from __future__ import annotations

import functools
import glob
import hashlib
import os
import platform
import sysconfig
import threading
import zipfile
import zlib

import numpy as np

from seqkit._paths import expand_path

from ._cifar import DataNotFoundError, NoDataDirError
from ._files import DataError, FileCheck, one_line, split_size
from ._index import check_index

ENV_VAR = "SEQKIT_DATA"
VOCAB_SIZE = 256  # byte values
MAX_LENGTH = 512
CORPORA = ("pytext", "enwik8", "text8")
SPLITS = ("train", "val", "test")
URLS = {
    "enwik8": "http://mattmahoney.net/dc/enwik8.zip",
    "text8": "http://mattmahoney.net/dc/text8.zip",
}
# (train, val, test) bytes; the file must hold exactly their sum (10^8).
_ENWIK8_SPLITS = (90_000_000, 5_000_000, 5_000_000)
_TEXT8_SPLITS = (90_000_000, 5_000_000, 5_000_000)
_WHAT = {
    "enwik8": "the first 10^8 bytes of English Wikipedia (Hutter Prize)",
    "text8": "10^8 bytes of lowercase a-z and space from English Wikipedia",
}


def _file_splits(corpus: str) -> tuple[int, int, int]:
    # Looked up when called, so that tests can shrink the expected size.
    return _ENWIK8_SPLITS if corpus == "enwik8" else _TEXT8_SPLITS


# --- pytext -----------------------------------------------------------------------------------


def _stdlib_files() -> tuple[str, list[str]]:
    stdlib = sysconfig.get_path("stdlib")
    paths = [p for p in glob.glob(os.path.join(glob.escape(stdlib), "*.py")) if os.path.isfile(p)]
    return stdlib, sorted(paths, key=os.path.basename)


@functools.lru_cache(maxsize=1)
def _pytext_stream() -> bytes:
    """The `pytext` stream, built once per process."""
    stdlib, paths = _stdlib_files()
    if not paths:
        raise DataNotFoundError(
            f"pytext: no *.py files in the Python standard library folder {stdlib} "
            f"(sysconfig.get_path('stdlib')); expected the installation's source files"
        )
    parts = []
    for p in paths:
        with open(p, "rb") as f:
            parts.append(f.read())
        parts.append(b"\n")
    return b"".join(parts)


def _pytext_bounds(n: int) -> dict[str, tuple[int, int]]:
    held = n // 20  # 5% each for val and test
    train = n - 2 * held
    return {"train": (0, train), "val": (train, train + held), "test": (train + held, n)}


@functools.lru_cache(maxsize=1)
def pytext_fingerprint() -> dict:
    """What the `pytext` corpus is on this Python installation.

    Its bytes are the installation's standard library source, so they differ
    between Python versions (and builds); record this with results.

    **Returns:**

    A dict: `python` (`platform.python_version()`), `implementation`
    (`platform.python_implementation()`), `stdlib` (the folder read), `files` (the
    number of `*.py` files), `bytes` (the stream's length), `splits` (`{split:
    (start, stop)}` byte offsets) and `sha256` (hex digest of the whole stream).
    """
    stream = _pytext_stream()
    stdlib, paths = _stdlib_files()
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "stdlib": stdlib,
        "files": len(paths),
        "bytes": len(stream),
        "splits": _pytext_bounds(len(stream)),
        "sha256": hashlib.sha256(stream).hexdigest(),
    }


# --- enwik8 / text8 ---------------------------------------------------------------------------


def _resolve(data_dir: str | os.PathLike | None, corpus: str) -> str:
    if data_dir is None:
        data_dir = os.environ.get(ENV_VAR)
    if not data_dir:
        raise NoDataDirError(corpus, f"{corpus} or {corpus}.zip ({URLS[corpus]})")
    return expand_path(data_dir)


def _candidates(data_dir: str, corpus: str) -> list[tuple[str, str]]:
    """(kind, path) of every place `corpus` is looked up, in order."""
    out = []
    for folder in (data_dir, os.path.join(data_dir, corpus)):
        out.append(("raw", os.path.join(folder, corpus)))
        out.append(("zip", os.path.join(folder, corpus + ".zip")))
    return out


def _locate(data_dir: str, corpus: str) -> tuple[str, str]:
    """(kind, path) of the first file there; DataNotFoundError naming every place otherwise."""
    places = _candidates(data_dir, corpus)
    for kind, path in places:
        if os.path.isfile(path):
            return kind, path
    looked = ", ".join(p for _, p in places)
    raise DataNotFoundError(
        f"{corpus} not found: looked for {looked}; put {corpus}.zip ({URLS[corpus]}, "
        f"{_WHAT[corpus]}) or the file {corpus} unzipped from it at "
        f"{os.path.join(data_dir, corpus + '.zip')} or {os.path.join(data_dir, corpus)}"
    )


def _zip_member(path: str, corpus: str) -> zipfile.ZipInfo:
    """The member `corpus` of the archive `path`; DataError when it is not there or not a zip."""
    again = f"expected the archive {corpus}.zip ({URLS[corpus]}) holding a member {corpus}; download it again"
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
            if corpus not in names:
                raise DataError(f"{path} has no member {corpus!r} (it has {names[:5]}); {again}")
            return z.getinfo(corpus)
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise DataError(
            f"{path} is not a readable zip archive (truncated or corrupt?): {one_line(e)}; {again}"
        ) from None


def _check_size(path: str, corpus: str, size: int, what: str) -> None:
    expected = sum(_file_splits(corpus))
    if size != expected:
        raise DataError(
            f"{path}: expected {what} of {expected:,} bytes ({corpus}: {_WHAT[corpus]}), got {size:,} "
            f"bytes; get {URLS[corpus]} again"
        )


def _check_file(kind: str, path: str, corpus: str) -> None:
    """DataError unless the raw file, or the archive's member, has the corpus's size."""
    if kind == "raw":
        _check_size(path, corpus, os.path.getsize(path), "a file")
    else:
        _check_size(path, corpus, _zip_member(path, corpus).file_size, f"the member {corpus!r}")


_ZIP_CACHE: dict[tuple, np.ndarray] = {}
_ZIP_LOCK = threading.Lock()


def _read_zip(path: str, corpus: str) -> np.ndarray:
    """The archive member's bytes, decompressed once per process (per file version)."""
    st = os.stat(path)
    key = (os.path.abspath(path), st.st_mtime_ns, st.st_size)
    with _ZIP_LOCK:
        if key not in _ZIP_CACHE:
            _check_file("zip", path, corpus)
            try:
                with zipfile.ZipFile(path) as z:
                    raw = z.read(corpus)  # checks the CRC
            except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as e:
                raise DataError(
                    f"{path}: the member {corpus!r} cannot be decompressed (truncated or corrupt?): "
                    f"{one_line(e)}; download {URLS[corpus]} again"
                ) from None
            _check_size(path, corpus, len(raw), f"the member {corpus!r}")
            for old in [k for k in _ZIP_CACHE if k[0] == key[0]]:
                del _ZIP_CACHE[old]  # an older version of the same file
            _ZIP_CACHE[key] = np.frombuffer(raw, np.uint8)
        return _ZIP_CACHE[key]


# --- the source -------------------------------------------------------------------------------


class ByteSource:
    """Random-access source of a byte-level language-modeling corpus, one split.

    Items: `inputs` int32 `(max_length,)` and `label` int32 `(max_length,)`: chunk
    `i` of `max_length + 1` consecutive bytes of the split, `inputs =
    bytes[i L : i L + L]` and `label = bytes[i L + 1 : i L + L + 1]` (`L =
    max_length`); values 0..255 (`vocab_size` 256). Consecutive chunks share one byte
    (each input byte is used once, each label byte once); `len` is
    `(n - 1) // L` for a split of `n` bytes, or `size` when given.

    **Arguments:**

    - `corpus`: `"pytext"`, `"enwik8"` or `"text8"` (see `seqkit.data._bytes`).
    - `split`: `"train"`, `"val"` or `"test"`.
    - `data_dir`: `enwik8` / `text8`: the directory holding the file or its `.zip`
      (default `$SEQKIT_DATA`); `pytext` reads no directory and ignores it.
    - `size`: the first `size` chunks (default all); more than the split has is a
      `ValueError`.
    - `max_length`: `L`, the tokens per example (default 512).

    Files are found and their sizes checked here (`DataNotFoundError`,
    `DataError`). The source pickles small (the corpus, the path and the split's
    byte offsets); a copy reopens the memory map, or reads the archive or the
    standard library again, on first access.
    """

    vocab_size = VOCAB_SIZE

    def __init__(
        self,
        corpus: str,
        split: str,
        *,
        data_dir: str | os.PathLike | None = None,
        size: int | None = None,
        max_length: int = MAX_LENGTH,
    ):
        if corpus not in CORPORA:
            raise ValueError(f"unknown byte corpus {corpus!r}; expected one of {CORPORA}")
        if split not in SPLITS:
            raise ValueError(f"expected split in {SPLITS}, got {split!r}")
        if int(max_length) < 1:
            raise ValueError(f"expected max_length >= 1, got {max_length}")
        self.corpus = corpus
        self.split = split
        self.max_length = int(max_length)
        if corpus == "pytext":
            self.data_dir = None  # read from the installation, whatever data_dir says
            self._where = ("pytext", sysconfig.get_path("stdlib"))
            self._start, self._stop = _pytext_bounds(len(_pytext_stream()))[split]
        else:
            self.data_dir = _resolve(data_dir, corpus)
            self._where = _locate(self.data_dir, corpus)  # fail now, saying what to put where
            _check_file(*self._where, corpus)
            counts = _file_splits(corpus)
            start = sum(counts[: SPLITS.index(split)])
            self._start, self._stop = start, start + counts[SPLITS.index(split)]
        full = max(self._stop - self._start - 1, 0) // self.max_length
        what = (
            f"the {corpus} {split} split: {self._stop - self._start:,} bytes, "
            f"{full} chunks of max_length + 1 = {self.max_length + 1}"
        )
        self._size = split_size(size, full, split, what)
        self._data = None

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_data"] = None  # reopened (or reread) in the copy
        return state

    def _corpus_bytes(self) -> np.ndarray:
        if self._data is None:
            kind, path = self._where
            if kind == "pytext":
                self._data = np.frombuffer(_pytext_stream(), np.uint8)
            elif kind == "raw":
                self._data = np.memmap(path, dtype=np.uint8, mode="r")
            else:
                self._data = _read_zip(path, self.corpus)
        return self._data

    @property
    def path(self) -> str:
        """The file read: the raw file, the `.zip` archive or (`pytext`) the standard library folder."""
        return self._where[1]

    @property
    def bounds(self) -> tuple[int, int]:
        """The split's `(start, stop)` byte offsets in the corpus stream."""
        return self._start, self._stop

    def stream(self) -> np.ndarray:
        """The split's bytes (uint8, all of them, whatever `size`): a view, memory-mapped for raw files."""
        return self._corpus_bytes()[self._start : self._stop]

    def __len__(self) -> int:
        return self._size

    def __getitem__(self, i):
        i = check_index(i, self._size)
        at = self._start + i * self.max_length
        chunk = np.asarray(self._corpus_bytes()[at : at + self.max_length + 1], dtype=np.int32)
        return {"inputs": chunk[:-1], "label": chunk[1:]}

    def __repr__(self):
        return (
            f"ByteSource({self.corpus!r}, split={self.split!r}, path={self.path!r}, "
            f"max_length={self.max_length}, n={len(self)})"
        )


def unigram_bits_per_byte(source: ByteSource) -> float:
    """The entropy, in bits, of the byte frequencies of `source`'s whole split.

    `-sum(p log2 p)` over the 256 byte values, `p` the count of each in the split's
    stream (`source.stream()`, every byte of the split whatever `size`) divided by
    its length. A model that predicts each byte from these frequencies alone scores
    this many bits per byte (on that same split); a language model must do better.
    Counted with `numpy.bincount` in blocks of 16 MiB.
    """
    if not isinstance(source, ByteSource):
        raise TypeError(
            f"expected a ByteSource (make_source('pytext' / 'enwik8' / 'text8', ...)), got {source!r}"
        )
    stream = source.stream()
    if stream.size == 0:
        raise ValueError(f"{source!r}: the split has no bytes, so no byte frequencies")
    counts = np.zeros(VOCAB_SIZE, np.int64)
    block = 1 << 24
    for at in range(0, stream.size, block):
        counts += np.bincount(np.asarray(stream[at : at + block]), minlength=VOCAB_SIZE)
    p = counts[counts > 0] / stream.size
    return float(-(p * np.log2(p)).sum())


# --- seqkit data check ------------------------------------------------------------------------


def _check_corpus_files(corpus: str):
    def files(data_dir: str | os.PathLike | None = None) -> list[FileCheck]:
        data_dir = _resolve(data_dir, corpus)
        checks, first = [], None
        for kind, path in _candidates(data_dir, corpus):
            what = (
                f"{corpus}.zip ({URLS[corpus]}), read in place"
                if kind == "zip"
                else f"{corpus} unzipped from {corpus}.zip, memory-mapped"
            )
            if not os.path.isfile(path):
                checks.append(FileCheck(path, False, what))
                continue
            if first is not None:
                checks.append(FileCheck(path, False, f"{what}; not used while {first} is there", "unused"))
                continue
            first = path
            try:
                _check_file(kind, path, corpus)
            except (DataError, OSError) as e:
                checks.append(FileCheck(path, False, f"{what}; {one_line(e)}", "bad"))
            else:
                checks.append(FileCheck(path, True, what))
        return checks

    files.__doc__ = (
        f"What `{corpus}` reads from `data_dir` (default `$SEQKIT_DATA`): the first of four places "
        f"that exists. It counts as present when its size (a zip: its member's) is the corpus's."
    )
    return files


check_enwik8_files = _check_corpus_files("enwik8")
check_text8_files = _check_corpus_files("text8")


def check_pytext_files(data_dir: str | os.PathLike | None = None) -> list[FileCheck]:
    """What `pytext` reads: the Python standard library folder of this installation.

    Needs nothing to be put anywhere; `data_dir` is ignored.
    """
    stdlib, paths = _stdlib_files()
    note = (
        f"pytext: the top-level *.py files of this Python's standard library ({len(paths)} files, "
        f"Python {platform.python_version()}); nothing to download, no data directory needed"
    )
    return [FileCheck(stdlib, bool(paths), note)]
