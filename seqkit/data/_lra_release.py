"""Readers of the published Long Range Arena files (Tay et al., "Long Range Arena",
ICLR 2021): ListOps `.tsv` files and the Pathfinder / Path-X PNG folders of
`lra_release.gz` (no downloads).

**Where the files are looked up.** The archive unpacks to `lra_release/`, in
which (as the LRA repository's `dataset_setup.sh` and other readers have it) a
second `lra_release/` may hold the task folders. Given a data directory `DIR`, a
task folder `F` (`listops-1000`, `pathfinder32`, `pathfinder64`,
`pathfinder128`, `pathfinder256`) is looked up as `DIR/F`,
`DIR/lra_release/F` and `DIR/lra_release/lra_release/F`; also as `DIR/listops` or
`DIR/pathfinder/F` (where LRA's `dataset_setup.sh` moves them), and `DIR` may be
the task folder itself (as the S4 reference pipeline, state-spaces/s4
`src/dataloaders/lra.py`, expects its `data_dir`), unless it is named as another
task's folder (`pathfinder32/` is not read as Path-X). Messages name the first
form, `DIR/lra_release/F`.

**ListOps** (`lra_benchmarks/data/listops.py` writes them, `lra_benchmarks/listops/
input_pipeline.py` and S4 read them): `listops-1000/basic_{train,val,test}.tsv`,
tab-separated with the header `Source<TAB>Target`; `Source` is the tree with
every partial application in parentheses, `( ( ( [MAX 2 ) 9 ) ] )`, `Target` its
value `0..9`. Tokens are those of the generated ListOps source (`tokenize_listops`:
parentheses dropped, the 15 symbols plus padding 0), padded to 2048 with a mask,
so items are identical in format to `ListOpsSource`'s.

**Pathfinder / Path-X** (`lra_benchmarks/data/pathfinder.py` and S4 read them; the
generator is drewlinsley/pathfinder `snakes2.py`): `pathfinder{32,64,128,256}/
<level>/` with `<level>` one of `curv_baseline` (contour length 6, LRA's "easy"),
`curv_contour_length_9` ("intermediate") and `curv_contour_length_14` ("hard",
the LRA task); Path-X is `pathfinder128`. In a level, `imgs/<n>/sample_<k>.png` are
8-bit grayscale PNGs and `metadata/<n>.npy` — despite the name, plain text — lists
them, one line per image, fields separated by spaces:

    imgs/0 sample_0.png 0 1 1.0 14 4 2 0.5 1 1

field 0 is the image folder (relative to the level), field 1 the file name and
field 3 the label (1: the markers are connected); the rest (image number, contour
and paddle settings) are not used. A `.npy` file in NumPy's binary format (as the
public generator's `np.save` writes it), an array of such rows, is read too.
Metadata files are read in the order of their number `<n>`, rows in file order.
Like S4, `pathfinder32/curv_baseline/imgs/0/sample_172.png` (an empty file in the
release) is left out.

**Pathfinder splits, as S4's reference pipeline makes them.** S4 puts all `N`
rows of a level in one list (in the order above) and calls
`torch.utils.data.random_split(dataset, [N - 2 * int(0.1 * N), int(0.1 * N),
int(0.1 * N)], generator=torch.Generator().manual_seed(42))`: train, val and test
are consecutive slices of `torch.randperm(N)` drawn from that generator. This
module draws the same permutation without PyTorch (`s4_permutation`: PyTorch's CPU
`randperm` is a Fisher-Yates shuffle, position `i` swapped with
`i + random() % (N - i)`, `random()` the 32-bit outputs of MT19937 seeded with
`init_genrand(42)`, which are NumPy's `RandomState(42)` outputs), so split `s`,
item `i` is the same image as S4's. The split depends on every row of the level:
a partial copy of the release gives other splits.

**Errors.** A source checks its files when it is built: a missing file or folder
raises `DataNotFoundError` saying where it must go, a truncated or malformed `.tsv`
or metadata row, a duplicated image or the first image of the split not being a
readable PNG of the expected size raise `DataError` naming the file (and line).
Images are decoded when an item is read, so a later broken PNG raises `DataError`
then, naming it.
"""

from __future__ import annotations

import functools
import os
import re
import threading

import numpy as np

from ._cifar import DataNotFoundError
from ._files import DataError, FileCheck, one_line, split_size
from ._index import check_index
from ._listops import CLOSE, DEFAULT_SEQ_LEN, OP0, OPERATORS, PAD, VOCAB, _parse, tokenize_listops

RELEASE_URL = "https://storage.googleapis.com/long-range-arena/lra_release.gz"
RELEASE = "lra_release"
_NESTINGS = ("lra_release", os.path.join("lra_release", "lra_release"), "")

LISTOPS_FOLDER = "listops-1000"
LISTOPS_FILES = {split: f"basic_{split}.tsv" for split in ("train", "val", "test")}
LISTOPS_COLUMNS = ("Source", "Target")

# seqkit preset -> release folder, and contour length -> level folder.
PATHFINDER_FOLDERS = {
    "pathfinder32": "pathfinder32",
    "pathfinder64": "pathfinder64",
    "pathx": "pathfinder128",
    "pathfinder256": "pathfinder256",
}
PATHFINDER_SIDES = {"pathfinder32": 32, "pathfinder64": 64, "pathx": 128, "pathfinder256": 256}
LEVEL_FOLDERS = {6: "curv_baseline", 9: "curv_contour_length_9", 14: "curv_contour_length_14"}
# S4's blacklist (an empty file in the release), relative to the release folder.
_EXCLUDED = {("pathfinder32", "curv_baseline"): {"imgs/0/sample_172.png"}}
S4_SPLIT_SEED = 42
S4_HOLDOUT_FRACTION = 0.1  # val and test each

_METADATA_FILE = re.compile(r"^(\d+)\.npy$")
_ROW_FORMAT = "`imgs/<n> sample_<k>.png <k> <label 0|1> ...` (fields separated by spaces)"


def _where(folder: str) -> str:
    return f"{RELEASE}/{folder}/ of {RELEASE_URL}, unpacked"


def _check_advice(name: str, data_dir: str, level: str = "") -> str:
    return f"`seqkit data check {name} --data-dir {data_dir}{level}` lists the files"


def _other_task_folder(data_dir: str, folder: str) -> str | None:
    """The name of `data_dir` when it is the release folder of another task than
    `folder` (`pathfinder32` given for Path-X's `pathfinder128`, say), else None."""
    base = os.path.basename(os.path.normpath(data_dir))
    tasks = (LISTOPS_FOLDER, *PATHFINDER_FOLDERS.values())
    return base if base in tasks and base != folder else None


def _candidates(data_dir: str, folder: str, extra: str) -> list[str]:
    """Where the task folder `folder` may be under `data_dir` (see the module notes);
    `data_dir` itself only when it is not named as another task's folder."""
    places = [os.path.join(data_dir, n, folder) for n in _NESTINGS]
    itself = [] if _other_task_folder(data_dir, folder) else [data_dir]
    return [places[-1], *places[:-1], os.path.join(data_dir, extra), *itself]


# -- ListOps ---------------------------------------------------------------------------


def listops_release_dir(data_dir: str) -> str | None:
    """The folder holding the released `basic_*.tsv` files under `data_dir`, or None."""
    for candidate in _candidates(data_dir, LISTOPS_FOLDER, "listops"):
        if any(os.path.isfile(os.path.join(candidate, f)) for f in LISTOPS_FILES.values()):
            return candidate
    return None


def listops_release_advice(data_dir: str) -> str:
    """Where the released ListOps files go (for messages about a missing data set)."""
    canonical = os.path.join(data_dir, RELEASE, LISTOPS_FOLDER)
    return (
        f"or put the LRA release files at {os.path.join(canonical, 'basic_{train,val,test}.tsv')} "
        f"({_where(LISTOPS_FOLDER)}); {_check_advice('listops', data_dir)}"
    )


# The fast tokenizer keeps one byte of every token and deletes the rest: for the
# operators `[MIN [MAX [MED [SM` the letters I, A, E, S (the other bytes of the
# operators, the parentheses and the spaces are deleted), digits and `]` as they are.
_DELETE = b"()[MNXD "


def _token_table() -> tuple[bytes, tuple[tuple[bytes, int], ...], dict[int, int]]:
    """The translate table (kept byte -> token id, anything else -> 255), the
    operators as (text, id), and the length of each token's text by id."""
    table = bytearray([255] * 256)
    ops = []
    width = {}
    for i, word in enumerate(VOCAB):
        if i == PAD:
            continue
        raw = word.encode()
        kept = raw.translate(None, _DELETE)
        # Invariant of the vocabulary: each token keeps one byte, no two the same.
        assert len(kept) == 1 and table[kept[0]] == 255, word
        table[kept[0]] = i
        width[i] = len(raw)
        if len(raw) > 1:
            ops.append((raw, i))
    return bytes(table), tuple(ops), width


_TABLE, _OPS, _WIDTH = _token_table()


def _fast_tokens(source: bytes) -> bytes | None:
    """Token ids of a `Source` field in the canonical LRA form (single spaces between
    words), or None where `tokenize_listops` must decide.

    Exact: with every operator letter inside an operator (the counts agree), no
    other bytes than tokens and parentheses (the lengths agree) and as many words
    as tokens plus parentheses, each word is one token or one parenthesis, so the
    result is `tokenize_listops`'s.
    """
    if not source or source[:1] == b" " or source[-1:] == b" " or b"  " in source:
        return None
    ids = source.translate(_TABLE, _DELETE)
    if 255 in ids:
        return None
    parens = source.count(b"(") + source.count(b")")
    words = source.count(b" ") + 1
    if len(ids) != words - parens:
        return None
    chars = len(ids)
    for raw, i in _OPS:
        n = ids.count(i)
        if source.count(raw) != n:
            return None
        chars += n * (_WIDTH[i] - 1)
    if chars != len(source) - (words - 1) - parens:
        return None
    return ids


def _tokenize(source: bytes, path: str, lineno: int) -> bytes:
    """Token ids of one `Source` field as bytes (== `tokenize_listops`), DataError if bad."""
    ids = _fast_tokens(source)
    if ids is not None:
        return ids
    try:  # any other spacing, and errors: the reference tokenizer decides, and words its error
        return tokenize_listops(source.decode("utf-8")).astype(np.uint8).tobytes()
    except (ValueError, UnicodeDecodeError) as e:
        raise DataError(
            f"{path}, line {lineno}: not a ListOps tree in the LRA format: {one_line(e)}; expected "
            f"a `Source` such as `( ( ( [MAX 2 ) 9 ) ] )`; get the file from {RELEASE_URL} again"
        ) from None


# The change of nesting depth at each token id: an operator opens a list, `]` closes it.
_DEPTH = np.zeros(256, np.int8)
_DEPTH[OP0 : OP0 + len(OPERATORS)] = 1
_DEPTH[CLOSE] = -1
_EMPTY_LISTS = tuple(bytes((op, CLOSE)) for op in range(OP0, OP0 + len(OPERATORS)))


def _tree_error(ids: bytes) -> str | None:
    """Why the token ids of a `Source` field are not exactly one tree, or None.

    The fast path accepts only trees: a nesting depth that stays above 0 until the
    last id and ends at 0, and no operator directly followed by `]` (a list without
    arguments). Anything else is parsed, and the parser words the fault.
    """
    if not ids:
        return "an empty Source"
    depth = np.cumsum(_DEPTH[np.frombuffer(ids, np.uint8)], dtype=np.int32)
    closed = depth[-1] == 0 and (len(ids) == 1 or depth[:-1].min() > 0)
    if closed and not any(pair in ids for pair in _EMPTY_LISTS):
        return None
    try:
        _parse(list(ids))
    except ValueError as e:
        return str(e)
    return None


def _tree(source: bytes, path: str, lineno: int) -> bytes:
    """Token ids of one `Source` field that holds exactly one tree; DataError otherwise."""
    ids = _tokenize(source, path, lineno)
    if (error := _tree_error(ids)) is not None:
        shown = source[:60].decode("utf-8", "replace")
        raise DataError(
            f"{path}, line {lineno}: expected one ListOps tree such as `( ( ( [MAX 2 ) 9 ) ] )`, got "
            f"{shown!r} ({error}; truncated or corrupt?); get the file from {RELEASE_URL} again"
        )
    return ids


class _ListOpsRows:
    """One tsv file: token ids back to back (uint8), row offsets, labels and the
    line number of each row."""

    def __init__(self, tokens: np.ndarray, offsets: np.ndarray, labels: np.ndarray, lines: np.ndarray):
        self.tokens, self.offsets, self.labels, self.lines = tokens, offsets, labels, lines


def read_listops_tsv(path: str) -> _ListOpsRows:
    """Read one released ListOps `.tsv` (header `Source<TAB>Target`; blank lines are
    passed over); DataError if malformed."""
    again = f"get it from {RELEASE_URL} again"
    expected_header = "\t".join(LISTOPS_COLUMNS)
    chunks: list[bytes] = []
    lengths: list[int] = []
    labels: list[int] = []
    lines: list[int] = []
    with open(path, "rb") as f:
        header = f.readline().rstrip(b"\r\n").split(b"\t")
        try:
            names = [h.decode("utf-8").strip() for h in header]
            src_col, tgt_col = (names.index(c) for c in LISTOPS_COLUMNS)
        except (UnicodeDecodeError, ValueError):
            shown = b"\t".join(header)[:60].decode("utf-8", "replace")
            raise DataError(
                f"{path}: expected the header line {expected_header!r} of the LRA ListOps tsv files, "
                f"got {shown!r}; {again}"
            ) from None
        width = len(names)
        for lineno, line in enumerate(f, 2):
            if not line.strip():
                continue
            fields = line.rstrip(b"\r\n").split(b"\t")
            if len(fields) != width:
                raise DataError(
                    f"{path}, line {lineno}: expected {width} tab-separated fields "
                    f"({', '.join(names)}), got {len(fields)} (truncated or corrupt?); {again}"
                )
            target = fields[tgt_col].strip()
            if not (len(target) == 1 and target.isdigit()):
                raise DataError(
                    f"{path}, line {lineno}: expected a Target in 0..9, got "
                    f"{target[:20].decode('utf-8', 'replace')!r} (truncated or corrupt?); {again}"
                )
            ids = _tree(fields[src_col], path, lineno)
            chunks.append(ids)
            lengths.append(len(ids))
            labels.append(int(target))
            lines.append(lineno)
    if not labels:
        raise DataError(
            f"{path} holds no examples: expected the header {expected_header!r} and rows; {again}"
        )
    offsets = np.zeros(len(lengths) + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    tokens = np.frombuffer(b"".join(chunks), np.uint8)
    return _ListOpsRows(tokens, offsets, np.array(labels, np.int32), np.array(lines, np.int64))


# One copy per file and process, shared by the sources (and reloaded in workers).
_TSV_CACHE: dict[tuple, _ListOpsRows] = {}
_LOCK = threading.Lock()


def _listops_rows(path: str) -> _ListOpsRows:
    st = os.stat(path)
    key = (os.path.abspath(path), st.st_size, st.st_mtime_ns)
    with _LOCK:
        if key not in _TSV_CACHE:
            _TSV_CACHE[key] = read_listops_tsv(path)
        return _TSV_CACHE[key]


class ListOpsReleaseSource:
    """Random-access source over a released LRA ListOps split
    (`listops-1000/basic_{split}.tsv`), in file order.

    `source[i]` is `dict(inputs, label, mask)` exactly as `ListOpsSource`'s:
    `inputs` int32 `(seq_len,)` token ids (`tokenize_listops`) padded with 0, `mask`
    bool `(seq_len,)` True at the tokens, `label` int32 in `0..9` (the `Target`
    column). The file is read when the source is built (once per process); the
    arrays are not pickled, so the source pickles small.
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        split: str,
        *,
        size: int | None = None,
        seq_len: int = DEFAULT_SEQ_LEN,
    ):
        if split not in LISTOPS_FILES:
            raise ValueError(f"expected split in {tuple(LISTOPS_FILES)}, got {split!r}")
        self.directory = os.fspath(directory)
        self.split = split
        self.path = os.path.join(self.directory, LISTOPS_FILES[split])
        if not os.path.isfile(self.path):
            present = [f for f in LISTOPS_FILES.values() if os.path.isfile(os.path.join(self.directory, f))]
            raise DataNotFoundError(
                f"{self.path} is missing: expected the LRA ListOps {split} split there, next to "
                f"{', '.join(present) or 'the other splits'} ({_where(LISTOPS_FOLDER)})"
            )
        rows = self._rows = _listops_rows(self.path)
        n = len(rows.labels)
        self.size = split_size(size, n, split, f"the released {split} split")
        self.seq_len = int(seq_len)
        longest = int(np.argmax(np.diff(rows.offsets)))
        if rows.offsets[longest + 1] - rows.offsets[longest] > self.seq_len:
            raise DataError(
                f"{self.path}, line {rows.lines[longest]}: a tree of "
                f"{rows.offsets[longest + 1] - rows.offsets[longest]} tokens, expected at most "
                f"the padded length (max_length / seq_len) {self.seq_len} (LRA trees have fewer than 2000)"
            )

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_rows"] = None
        return state

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, i):
        i = check_index(i, self.size)
        if self._rows is None:  # unpickled in a worker: read the file again (once per process)
            self._rows = _listops_rows(self.path)
        rows = self._rows
        start, stop = rows.offsets[i], rows.offsets[i + 1]
        inputs = np.zeros(self.seq_len, np.int32)
        inputs[: stop - start] = rows.tokens[start:stop]
        mask = np.zeros(self.seq_len, bool)
        mask[: stop - start] = True
        return {"inputs": inputs, "label": rows.labels[i], "mask": mask}

    def __repr__(self):
        return f"ListOpsReleaseSource({self.path!r}, n={self.size}, seq_len={self.seq_len})"


def check_listops_files(data_dir: str | os.PathLike) -> list[FileCheck]:
    """The released ListOps files under `data_dir`: the three `basic_*.tsv` (present
    when they exist and start with the `Source<TAB>Target` header)."""
    data_dir = os.fspath(data_dir)
    folder = listops_release_dir(data_dir) or os.path.join(data_dir, RELEASE, LISTOPS_FOLDER)
    checks = []
    for split, name in LISTOPS_FILES.items():
        path = os.path.join(folder, name)
        note = f"LRA ListOps {split} split ({_where(LISTOPS_FOLDER)})"
        present, problem = os.path.isfile(path), ""
        if present:
            with open(path, "rb") as f:
                head = f.readline().rstrip(b"\r\n").split(b"\t")
            if not {c.encode() for c in LISTOPS_COLUMNS} <= {h.strip() for h in head}:
                present, problem = False, "bad"
                note = (
                    f"there, but without the header {chr(9).join(LISTOPS_COLUMNS)!r}: not an LRA ListOps tsv"
                )
        checks.append(FileCheck(path, present, note, problem))
    return checks


# -- Pathfinder / Path-X ----------------------------------------------------------------


def pathfinder_release_dir(data_dir: str, name: str) -> str | None:
    """The release folder of preset `name` (holding level folders) under `data_dir`, or None."""
    folder = PATHFINDER_FOLDERS[name]
    for candidate in _candidates(data_dir, folder, os.path.join("pathfinder", folder)):
        if any(os.path.isdir(os.path.join(candidate, level)) for level in LEVEL_FOLDERS.values()):
            return candidate
    return None


def _level_folder(contour_length: int) -> str:
    if contour_length not in LEVEL_FOLDERS:
        raise ValueError(
            f"expected contour_length in {tuple(LEVEL_FOLDERS)} (the release levels), got {contour_length}"
        )
    return LEVEL_FOLDERS[contour_length]


def _level_option(contour_length: int) -> str:
    return f" --contour-length {contour_length}" if contour_length != 14 else ""


def pathfinder_release_advice(data_dir: str, name: str, contour_length: int) -> str:
    """Where the released Pathfinder files go (for messages about a missing data set)."""
    folder = PATHFINDER_FOLDERS[name]
    level = os.path.join(data_dir, RELEASE, folder, _level_folder(contour_length))
    advice = (
        f"or put the LRA release files at {os.path.join(level, 'metadata', '<n>.npy')} and "
        f"{os.path.join(level, 'imgs', '<n>', 'sample_<k>.png')} ({_where(folder)}); "
        f"{_check_advice(name, data_dir, _level_option(contour_length))}"
    )
    other = _other_task_folder(data_dir, folder)
    if other is None or other == LISTOPS_FOLDER:
        return advice
    side = {PATHFINDER_FOLDERS[p]: s for p, s in PATHFINDER_SIDES.items()}[other]
    return (
        f"{advice}; {data_dir} is named as the release folder {other} ({side}x{side} images), not "
        f"{folder}, which {name} reads ({PATHFINDER_SIDES[name]}x{PATHFINDER_SIDES[name]} images): "
        f"give the folder holding {folder} as the data directory"
    )


def _metadata_rows(path: str) -> list[list[str]]:
    """The rows of one metadata file: text lines split on whitespace, or a binary .npy array."""
    with open(path, "rb") as f:
        raw = f.read()
    if raw.startswith(b"\x93NUMPY"):
        try:
            array = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise DataError(
                f"{path} is not a readable .npy array (truncated or corrupt?): {one_line(e)}; expected "
                f"one row per image, {_ROW_FORMAT}; get it from {RELEASE_URL} again"
            ) from None
        if array.ndim != 2:
            raise DataError(f"{path}: expected a 2-d array of rows {_ROW_FORMAT}, got shape {array.shape}")
        # Python 2's np.save writes str as bytes (dtype S): decode those cells.
        return [
            [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in row]
            for row in array.tolist()
        ]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(
            f"{path} is neither text nor a .npy array (corrupt?): {one_line(e)}; expected one line per "
            f"image, {_ROW_FORMAT}; get it from {RELEASE_URL} again"
        ) from None
    return [line.split() for line in text.splitlines()]


class _Level:
    """Every row of one level, in S4's order: image paths (relative) and labels."""

    def __init__(self, paths: list[str], labels: np.ndarray):
        self.paths, self.labels = paths, labels


def metadata_files(level_dir: str) -> list[str]:
    """The metadata files `metadata/<n>.npy` of a level, by number (S4's order)."""
    meta_dir = os.path.join(level_dir, "metadata")
    numbered = [(int(m.group(1)), f) for f in os.listdir(meta_dir) if (m := _METADATA_FILE.match(f))]
    return [os.path.join(meta_dir, f) for _, f in sorted(numbered)]


def read_pathfinder_level(level_dir: str, excluded: frozenset[str] = frozenset()) -> _Level:
    """Read and check the metadata of one release level; DataError if a row is malformed."""
    files = metadata_files(level_dir)
    if not files:
        raise DataNotFoundError(
            f"{os.path.join(level_dir, 'metadata')} holds no label files: expected metadata/<n>.npy, "
            f"one row per image {_ROW_FORMAT} ({RELEASE_URL})"
        )
    paths: list[str] = []
    labels: list[int] = []
    seen: dict[str, tuple[str, int]] = {}
    for file in files:
        for lineno, row in enumerate(_metadata_rows(file), 1):
            if not row:
                continue
            if len(row) < 4 or row[3] not in ("0", "1"):
                shown = " ".join(row)[:80]
                raise DataError(
                    f"{file}, line {lineno}: expected a row {_ROW_FORMAT}, got {shown!r} "
                    f"(truncated or corrupt?); get the file from {RELEASE_URL} again"
                )
            rel = f"{row[0].strip('/')}/{row[1]}"
            if rel in excluded:
                continue
            if rel in seen:
                first = seen[rel]
                raise DataError(
                    f"{file}, line {lineno}: the labels do not match the images: {rel} is listed again "
                    f"(first in {first[0]}, line {first[1]}); expected one row per image"
                )
            seen[rel] = (file, lineno)
            paths.append(rel)
            labels.append(int(row[3]))
    by_folder: dict[str, list[str]] = {}
    for rel in paths:
        folder, name = rel.rsplit("/", 1)
        by_folder.setdefault(folder, []).append(name)
    for folder, names in by_folder.items():
        full = os.path.join(level_dir, *folder.split("/"))
        present = set(os.listdir(full)) if os.path.isdir(full) else set()
        missing = [n for n in names if n not in present]
        if missing:
            file, lineno = seen[f"{folder}/{missing[0]}"]
            raise DataNotFoundError(
                f"{os.path.join(full, missing[0])} is missing: {file}, line {lineno} lists it, and "
                f"{len(missing)} of the {len(names)} images it lists in {full} are not there; expected "
                f"the labels and the images of one release (from {RELEASE_URL})"
            )
    return _Level(paths, np.array(labels, np.int8))


@functools.lru_cache(maxsize=4)
def s4_permutation(n: int, seed: int = S4_SPLIT_SEED) -> np.ndarray:
    """`torch.randperm(n, generator=torch.Generator().manual_seed(seed))` on the CPU, without PyTorch.

    PyTorch's CPU `randperm` (for `n < 2**32 / 20`) starts from `0..n-1` and, for
    `i = 0..n-2`, swaps entry `i` with entry `i + random() % (n - i)`, where
    `random()` is the next 32-bit output of its MT19937 engine, seeded by
    `init_genrand(seed mod 2**32)`: the same stream as NumPy's legacy
    `RandomState(seed)`, whose `randint(0, 2**32, dtype=uint32)` returns those
    outputs unchanged. Returns int64 `(n,)`.
    """
    if not 0 <= n < 2**32 // 20:
        raise ValueError(f"expected 0 <= n < {2**32 // 20} (the range of PyTorch's 32-bit randperm), got {n}")
    draws = np.random.RandomState(seed % 2**32).randint(0, 2**32, size=max(n - 1, 0), dtype=np.uint32)
    perm = list(range(n))
    for i, r in enumerate(draws.tolist()):  # plain ints: a Python loop over 200k swaps takes ~0.1 s
        z = i + r % (n - i)
        perm[i], perm[z] = perm[z], perm[i]
    return np.array(perm, np.int64)


def s4_split_sizes(n: int) -> dict[str, int]:
    """S4's Pathfinder split sizes of `n` images: val and test `int(0.1 * n)` each, train the rest."""
    held = int(S4_HOLDOUT_FRACTION * n)
    return {"train": n - 2 * held, "val": held, "test": held}


def s4_split(n: int, split: str) -> np.ndarray:
    """The rows (in the level's order) of one S4 split of `n` images, in S4's item order."""
    sizes = s4_split_sizes(n)
    start = {"train": 0, "val": sizes["train"], "test": sizes["train"] + sizes["val"]}[split]
    return s4_permutation(n)[start : start + sizes[split]]


def _pil():
    try:
        from PIL import Image
    except ImportError as e:  # a dependency of seqkit; only a broken install lacks it
        raise ImportError(
            f"reading the LRA Pathfinder PNG files needs Pillow (`pip install pillow`): {one_line(e)}"
        ) from None
    return Image


def read_png(path: str, side: int) -> np.ndarray:
    """One release image as uint8 `(side, side)`: decoded with Pillow and, like S4,
    converted to 8-bit grayscale (`convert("L")`, a no-op for the release's PNGs).
    DataNotFoundError if missing, DataError if unreadable or of another size."""
    Image = _pil()
    expected = f"expected a {side}x{side} grayscale PNG; get the release from {RELEASE_URL} again"
    try:
        with Image.open(path) as im:
            im.load()
            size, mode = im.size, im.mode
            gray = im if mode == "L" else im.convert("L")
            pixels = np.array(gray, np.uint8)
    except FileNotFoundError:
        raise DataNotFoundError(f"{path} is missing: the metadata lists it; {expected}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:  # PIL reports bad data as any of these
        raise DataError(
            f"{path} is not a readable PNG (truncated or corrupt?): {one_line(e)}; {expected}"
        ) from None
    if size != (side, side):
        raise DataError(f"{path}: a {size[0]}x{size[1]} image ({mode}); {expected}")
    return pixels


# One index per level and process, shared by the three splits (and rebuilt in workers).
_LEVELS: dict[tuple, _Level] = {}


def _level(level_dir: str, excluded: frozenset[str]) -> _Level:
    stats = tuple((f, st.st_size, st.st_mtime_ns) for f in metadata_files(level_dir) for st in [os.stat(f)])
    key = (os.path.abspath(level_dir), excluded, stats)
    with _LOCK:
        if key not in _LEVELS:
            _LEVELS[key] = read_pathfinder_level(level_dir, excluded)
        return _LEVELS[key]


class PathfinderReleaseSource:
    """Random-access source over one level of the released LRA Pathfinder / Path-X
    images, split as S4's reference pipeline splits them (see the module notes).

    `source[i]` is `dict(inputs, label)` as `PathfinderSource`'s: `inputs` float32
    `(side**2, 1)` pixels in `[0, 1]` (raster order), or int32 `(side**2,)` tokens
    `0..255` with `as_tokens=True`; `label` int32 (field 3 of the metadata row).

    The metadata is read and checked, and every listed image looked up, when the
    source is built (once per level and process); images are decoded per item.
    Holds only paths and settings when pickled.
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        name: str,
        split: str,
        *,
        contour_length: int = 14,
        size: int | None = None,
        as_tokens: bool = False,
    ):
        if name not in PATHFINDER_FOLDERS:
            raise ValueError(f"expected a preset in {tuple(PATHFINDER_FOLDERS)}, got {name!r}")
        if split not in ("train", "val", "test"):
            raise ValueError(f"expected split in ('train', 'val', 'test'), got {split!r}")
        self.directory = os.fspath(directory)
        self.name = name
        self.split = split
        self.contour_length = int(contour_length)
        level = _level_folder(self.contour_length)
        self.level_dir = os.path.join(self.directory, level)
        self.side = PATHFINDER_SIDES[name]
        self.as_tokens = bool(as_tokens)
        self._excluded = frozenset(_EXCLUDED.get((PATHFINDER_FOLDERS[name], level), ()))
        meta_dir = os.path.join(self.level_dir, "metadata")
        if not os.path.isdir(meta_dir):
            found = [f for f in LEVEL_FOLDERS.values() if os.path.isdir(os.path.join(self.directory, f))]
            raise DataNotFoundError(
                f"{meta_dir} is missing: expected the {level} level (contour length {self.contour_length}) "
                f"of LRA's {PATHFINDER_FOLDERS[name]} there, metadata/<n>.npy next to "
                f"imgs/<n>/sample_<k>.png ({_where(PATHFINDER_FOLDERS[name])}); "
                f"{self.directory} holds {', '.join(found) or 'no level'}"
            )
        self._level = _level(self.level_dir, self._excluded)
        n = len(self._level.labels)
        self._rows = s4_split(n, split)
        self.size = split_size(size, len(self._rows), split, f"the {split} split of {n} images")
        if self.size:
            self[0]  # a PNG of another size or an unreadable one fails here, before any training

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_level"] = state["_rows"] = None
        return state

    def _image(self, i) -> tuple[str, int]:
        """The image file and label of item `i`."""
        i = check_index(i, self.size)
        if self._level is None:  # unpickled in a worker: read the metadata again (once per process)
            self._level = _level(self.level_dir, self._excluded)
            self._rows = s4_split(len(self._level.labels), self.split)
        row = int(self._rows[i])
        path = os.path.join(self.level_dir, *self._level.paths[row].split("/"))
        return path, int(self._level.labels[row])

    def path(self, i) -> str:
        """The image file of item `i`."""
        return self._image(i)[0]

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, i):
        path, label = self._image(i)
        flat = read_png(path, self.side).reshape(-1)
        if self.as_tokens:
            return {"inputs": flat.astype(np.int32), "label": np.int32(label)}
        return {"inputs": (flat.astype(np.float32) / np.float32(255.0))[:, None], "label": np.int32(label)}

    def __repr__(self):
        return f"PathfinderReleaseSource({self.level_dir!r}, split={self.split!r}, n={self.size})"


def check_pathfinder_files(
    data_dir: str | os.PathLike, name: str, contour_length: int = 14
) -> list[FileCheck]:
    """The released files of one Pathfinder level under `data_dir`: its metadata
    folder (present when its rows read) and its image folders (present when every
    image the metadata lists is there)."""
    data_dir = os.fspath(data_dir)
    folder = PATHFINDER_FOLDERS[name]
    level = _level_folder(contour_length)
    root = pathfinder_release_dir(data_dir, name) or os.path.join(data_dir, RELEASE, folder)
    level_dir = os.path.join(root, level)
    meta_dir = os.path.join(level_dir, "metadata")
    imgs_dir = os.path.join(level_dir, "imgs")
    side = PATHFINDER_SIDES[name]
    meta_note = f"label files <n>.npy, one row per image {_ROW_FORMAT} ({_where(folder)})"
    imgs_note = f"images <n>/sample_<k>.png, {side}x{side} grayscale PNGs ({_where(folder)})"
    if not os.path.isdir(meta_dir):
        return [
            FileCheck(meta_dir, False, meta_note),
            FileCheck(imgs_dir, os.path.isdir(imgs_dir), imgs_note),
        ]
    excluded = frozenset(_EXCLUDED.get((folder, level), ()))
    try:
        n = len(read_pathfinder_level(level_dir, excluded).labels)
    except DataNotFoundError as e:
        if not metadata_files(level_dir):
            return [
                FileCheck(meta_dir, False, meta_note),
                FileCheck(imgs_dir, os.path.isdir(imgs_dir), imgs_note),
            ]
        return [
            FileCheck(meta_dir, True, f"{len(metadata_files(level_dir))} label files"),
            FileCheck(imgs_dir, False, f"{one_line(e)}"),
        ]
    except DataError as e:
        return [
            FileCheck(meta_dir, False, one_line(e), "bad"),
            FileCheck(imgs_dir, os.path.isdir(imgs_dir), imgs_note),
        ]
    sizes = ", ".join(f"{k} {v}" for k, v in s4_split_sizes(n).items())
    return [
        FileCheck(meta_dir, True, f"{len(metadata_files(level_dir))} label files, {n} rows ({sizes})"),
        FileCheck(imgs_dir, True, f"all {n} listed images there ({side}x{side} PNGs, decoded when read)"),
    ]
