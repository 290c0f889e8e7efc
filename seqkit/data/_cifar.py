"""Sequential CIFAR-10 read from the standard CIFAR-10 python archive (no downloads).

The files are looked up in a directory given explicitly or by the environment
variable `SEQKIT_DATA` (`~` and `$VAR` expanded), in this order:

1. `DIR/cifar-10-batches-py/{data_batch_1..5, test_batch}` (the extracted archive),
2. `DIR/{data_batch_1..5, test_batch}` (DIR is the extracted folder itself),
3. `DIR/cifar-10-python.tar.gz` (read in place, without extracting).

Each batch is a pickled dict with `b"data"` (`(n, 3072)` uint8: the red, green and
blue 32x32 planes, row-major) and `b"labels"` (n ints in 0..9).

Splits: `train` is the first 90% of the 50k training images (45k), `val` the last
10% (5k), `test` the 10k test images.

Every file is read when a source is built, so a truncated or corrupt archive or
batch raises `DataError` (naming the file) before any training starts.
"""

from __future__ import annotations

import gzip
import os
import pickle
import tarfile
import threading
import zlib

import numpy as np

from seqkit._paths import expand_path

from ._files import DataError, FileCheck, archive_or_folder, one_line, split_size
from ._index import check_index

ARCHIVE = "cifar-10-python.tar.gz"
FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
BATCHES = (*TRAIN_BATCHES, TEST_BATCH)
ARCHIVE_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
ARCHIVE_SIZE = 170_498_071  # bytes of the download at ARCHIVE_URL
ENV_VAR = "SEQKIT_DATA"
VAL_FRACTION = 0.1

# Standard CIFAR-10 per-channel statistics (R, G, B) of pixels scaled to [0, 1].
CIFAR_MEAN = np.array([0.4914, 0.4822, 0.4465], np.float32)
CIFAR_STD = np.array([0.2470, 0.2435, 0.2616], np.float32)
# Grayscale statistics (0..255 scale) used for the LRA Image task's scalar inputs.
GRAY_MEAN = np.float32(122.6)
GRAY_STD = np.float32(61.0)
# ITU-R 601 luma weights, the usual RGB -> grayscale conversion.
LUMA = np.array([0.2989, 0.5870, 0.1140], np.float32)


class DataNotFoundError(FileNotFoundError):
    """A dataset's files are missing; the message says which file to put where."""


# How `seqkit train` and `make_source` take a data directory (the default of `NoDataDirError`).
TRAIN_WAYS = "`--set data.data_dir=DIR` (seqkit train), data_dir=DIR (make_source)"


class NoDataDirError(DataNotFoundError):
    """No data directory given, nor `$SEQKIT_DATA`, for dataset `what` read from
    files; `needs`: what DIR must hold; `ways`: how the caller takes a directory
    (`seqkit data check` gives its own)."""

    def __init__(self, what: str, needs: str, ways: str = TRAIN_WAYS):
        super().__init__(what, needs, ways)  # the arguments, so that it pickles
        self.what, self.needs, self.ways = what, needs, ways

    def __str__(self) -> str:
        return (
            f"no {self.what} data directory given: expected {self.ways} or the environment variable "
            f"{ENV_VAR}=DIR, with {self.needs} in DIR"
        )


def resolve_data_dir(data_dir: str | os.PathLike | None) -> str:
    """`data_dir`, else `$SEQKIT_DATA`, `~` and `$VAR` expanded; DataNotFoundError when neither is given."""
    if data_dir is None:
        data_dir = os.environ.get(ENV_VAR)
    if not data_dir:
        raise NoDataDirError("CIFAR-10", f"{ARCHIVE} ({ARCHIVE_URL})")
    return expand_path(data_dir)


def _locate(data_dir: str) -> tuple[str, str]:
    """Return ("dir", folder) or ("tar", archive path); DataNotFoundError otherwise."""
    folder = os.path.join(data_dir, FOLDER)
    for candidate in (folder, data_dir):
        present = [b for b in BATCHES if os.path.isfile(os.path.join(candidate, b))]
        if len(present) == len(BATCHES):
            return "dir", candidate
        if present:
            missing = [os.path.join(candidate, b) for b in BATCHES if b not in present]
            raise DataNotFoundError(
                f"incomplete CIFAR-10 batches in {candidate}: missing {', '.join(missing)}; "
                f"extract {ARCHIVE} ({ARCHIVE_URL}) into {data_dir} again"
            )
    archive = os.path.join(data_dir, ARCHIVE)
    if os.path.isfile(archive):
        return "tar", archive
    raise DataNotFoundError(
        f"CIFAR-10 not found in {data_dir}: put {ARCHIVE} ({ARCHIVE_URL}) at {archive}, "
        f"or extract it so that {os.path.join(folder, 'data_batch_1')} ... "
        f"{os.path.join(folder, TEST_BATCH)} exist"
    )


def _unpickle(raw: bytes, name: str, again: str) -> tuple[np.ndarray, np.ndarray]:
    """Decode one batch file's bytes; `again` says how to get the file again."""
    expected = "expected a pickled dict with b'data' (n, 3072) uint8 and b'labels' (n ints in 0..9)"
    try:
        batch = pickle.loads(raw, encoding="bytes")
    except Exception as e:  # noqa: BLE001 - garbage makes pickle raise almost any type
        raise DataError(
            f"{name} is not a readable CIFAR-10 python batch (truncated or corrupt?): {one_line(e)}; "
            f"{expected}; {again}"
        ) from None
    try:
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[b"labels"], dtype=np.int32)
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise DataError(
            f"{name} is not a CIFAR-10 python batch: {one_line(e)}; {expected}; {again}"
        ) from None
    if data.ndim != 2 or data.shape[1] != 3072 or labels.shape != (data.shape[0],):
        raise DataError(
            f"{name}: expected data (n, 3072) and n labels, got {data.shape} and {labels.shape}; {again}"
        )
    if labels.size and not (labels.min() >= 0 and labels.max() <= 9):
        raise DataError(f"{name}: expected labels in 0..9, got {labels.min()}..{labels.max()}; {again}")
    return data, labels


def _read_archive(path: str) -> dict[str, bytes]:
    """The bytes of every batch in the archive; DataError when it is not a readable .tar.gz."""
    wanted = {f"{FOLDER}/{b}": b for b in BATCHES}
    raw = {}
    try:
        # One forward pass, then the rest of the stream: gzip checks its length and
        # CRC only at the end, and tarfile stops quietly at a garbled header.
        with gzip.open(path, "rb") as gz, tarfile.open(fileobj=gz, mode="r:") as tar:
            for member in tar:
                if member.name in wanted and member.isfile():
                    raw[wanted[member.name]] = tar.extractfile(member).read()
            while gz.read(1 << 20):
                pass
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as e:
        # A short download ends the gzip stream early (EOFError); other bytes are not gzip.
        raise DataError(
            f"{path} is not a readable gzip tar archive (truncated or corrupt?): {one_line(e)}; "
            f"expected the CIFAR-10 python archive ({ARCHIVE_URL}); download it again"
        ) from None
    missing = [name for name, b in wanted.items() if b not in raw]
    if missing:
        raise DataNotFoundError(
            f"{path} lacks {', '.join(missing)}: expected the CIFAR-10 python archive "
            f"({ARCHIVE_URL}); download it again"
        )
    return raw


def load_cifar10(data_dir: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Read every batch: `{"train": (x (50000, 3072) uint8, y), "test": (x, y)}`."""
    kind, where = _locate(data_dir)
    parts = {}
    if kind == "dir":
        again = f"extract {ARCHIVE} ({ARCHIVE_URL}) again"
        for b in BATCHES:
            path = os.path.join(where, b)
            with open(path, "rb") as f:
                parts[b] = _unpickle(f.read(), path, again)
    else:
        again = f"download {ARCHIVE} ({ARCHIVE_URL}) again"
        for b, raw in _read_archive(where).items():
            parts[b] = _unpickle(raw, f"{where}:{FOLDER}/{b}", again)
    train_x = np.concatenate([parts[b][0] for b in TRAIN_BATCHES])
    train_y = np.concatenate([parts[b][1] for b in TRAIN_BATCHES])
    return {"train": (train_x, train_y), "test": parts[TEST_BATCH]}


# One copy of the arrays per process, shared by the train/val/test sources.
_CACHE: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
_LOCK = threading.Lock()


def _cached(data_dir: str):
    key = os.path.abspath(data_dir)
    with _LOCK:
        if key not in _CACHE:
            _CACHE[key] = load_cifar10(data_dir)
        return _CACHE[key]


def _split_range(n_train: int, n_test: int, split: str) -> tuple[str, int, int]:
    n_val = round(n_train * VAL_FRACTION)
    if split == "train":
        return "train", 0, n_train - n_val
    if split == "val":
        return "train", n_train - n_val, n_train
    if split == "test":
        return "test", 0, n_test
    raise ValueError(f"expected split in ('train', 'val', 'test'), got {split!r}")


class CifarSource:
    """Random-access source of sequential CIFAR-10 (1024 steps, raster order).

    - `grayscale=False` (sCIFAR): inputs float32 `(1024, 3)`, each channel
      normalized with the standard CIFAR-10 mean and std.
    - `grayscale=True` (LRA Image): luma rounded to 0..255; inputs int32 `(1024,)`
      tokens with `as_tokens=True`, else float32 `(1024, 1)` as
      `(gray - 122.6) / 61`. The weights are TensorFlow's (0.2989, 0.5870,
      0.1140), as LRA's pipeline; that pipeline's `tf.image.rgb_to_grayscale`
      returns to uint8 by truncating `255.5 · g / 255` rather than rounding `g`, so
      some of its gray levels are one below these, and S4's (torchvision, PIL's
      `convert("L")`: weights 0.299, 0.587, 0.114, rounded) differ in the same way.

    `label` is int32 in 0..9. The arrays load when the first source of a
    directory is built (once per process; a bad file raises `DataError` here, not
    on first access) and are not pickled, so the source pickles small.
    """

    def __init__(
        self,
        split: str,
        *,
        data_dir: str | os.PathLike | None = None,
        grayscale: bool = False,
        as_tokens: bool = False,
        size: int | None = None,
    ):
        if as_tokens and not grayscale:
            raise ValueError("as_tokens=True needs grayscale=True (tokens are gray levels 0..255)")
        self.data_dir = resolve_data_dir(data_dir)
        _locate(self.data_dir)  # fail now, with the message saying what to put where
        self.split = split
        self.grayscale = bool(grayscale)
        self.as_tokens = bool(as_tokens)
        arrays = _cached(self.data_dir)
        part, start, stop = _split_range(len(arrays["train"][1]), len(arrays["test"][1]), split)
        stop = start + split_size(size, stop - start, split, f"the {split} split")
        self._part, self._start, self._stop = part, start, stop

    def __len__(self) -> int:
        return self._stop - self._start

    def __getitem__(self, i):
        i = check_index(i, len(self))
        x, y = _cached(self.data_dir)[self._part]
        planes = x[self._start + i].reshape(3, 1024).T  # (1024, 3) uint8, raster order
        label = np.int32(y[self._start + i])
        if not self.grayscale:
            rgb = planes.astype(np.float32) / np.float32(255.0)
            return {"inputs": (rgb - CIFAR_MEAN) / CIFAR_STD, "label": label}
        # elementwise, not `planes @ LUMA`: a BLAS product rounds differently per CPU,
        # and a gray level on a .5 boundary would then differ between machines
        p = planes.astype(np.float32)
        gray = np.round(p[:, 0] * LUMA[0] + p[:, 1] * LUMA[1] + p[:, 2] * LUMA[2])
        if self.as_tokens:
            return {"inputs": np.clip(gray, 0, 255).astype(np.int32), "label": label}
        return {"inputs": ((gray - GRAY_MEAN) / GRAY_STD)[:, None], "label": label}

    def __repr__(self):
        kind = "gray" if self.grayscale else "rgb"
        return f"CifarSource({self.data_dir!r}, split={self.split!r}, {kind}, n={len(self)})"


def check_cifar_files(data_dir: str | os.PathLike | None = None) -> list[FileCheck]:
    """What CIFAR-10 reads from `data_dir` (default `$SEQKIT_DATA`): either of two.

    The archive counts as present when it has the download's size (`ARCHIVE_SIZE`)
    and starts as a gzip file does (not read further; otherwise it is `"bad"`), the
    extracted folder (`DIR/cifar-10-batches-py`, or DIR itself when it holds the
    batches) when all six batches are in it.
    """
    data_dir = resolve_data_dir(data_dir)
    archive = os.path.join(data_dir, ARCHIVE)
    folder = os.path.join(data_dir, FOLDER)
    if not os.path.isdir(folder) and any(os.path.isfile(os.path.join(data_dir, b)) for b in BATCHES):
        folder = data_dir
    missing = [b for b in BATCHES if not os.path.isfile(os.path.join(folder, b))]
    return archive_or_folder(
        archive,
        f"the CIFAR-10 python archive ({ARCHIVE_URL}), read in place",
        ARCHIVE_SIZE,
        folder,
        missing,
        len(BATCHES),
        f"or that archive extracted: {FOLDER}/{{{', '.join(BATCHES)}}}",
    )


check_files = check_cifar_files  # the name `seqkit data check` looks up in each reader module
