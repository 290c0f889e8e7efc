"""The error for dataset files that are there but unreadable, and how its messages quote a cause."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import NamedTuple

from seqkit._json import json_or_none


class DataError(ValueError):
    """A dataset file is there but unreadable: truncated, corrupt or in another format.

    The message is one line naming the file, what was expected and how to get it
    again. A `ValueError`, so a command line reports it like any other bad setting;
    files that are missing raise `DataNotFoundError` (a `FileNotFoundError`) instead.
    """


def read_json_file(path: str, advice: str) -> object:
    """The JSON content of `path`; a `DataError` naming it (and `advice`) when it is
    truncated, corrupt or not UTF-8."""
    try:
        with open(path, "rb") as f:
            return json.loads(f.read().decode("utf-8"))
    except ValueError as e:  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise DataError(
            f"{path} is not readable JSON (truncated or corrupt?): {one_line(e)}; {advice}"
        ) from None


def cache_kind(meta: dict) -> str | None:
    """The dataset of a seqkit cache's metadata object: its `kind`; for caches written
    before kinds were recorded, `"pathfinder"` when it has `splits` and `preset`, and
    `"listops"` when it has `splits` and `generator_version` but no `preset`. `None`
    for anything else (a `metadata.json` of another tool)."""
    kind = meta.get("kind")
    if kind is not None:
        return kind if isinstance(kind, str) else None
    if "splits" not in meta:
        return None
    if "preset" in meta:
        return "pathfinder"
    return "listops" if "generator_version" in meta else None


def find_cache(data_dir: str, name: str, metadata: str, ours: Callable[[dict], bool]) -> str | None:
    """The first of `data_dir` and `data_dir/name` whose `metadata` file describes
    this dataset's cache (`ours(meta)`), or `None`. Another dataset's cache there
    (a Pathfinder-32 cache written into `data_dir` itself, say), or a JSON object
    that is no seqkit cache's (see `cache_kind`), is passed over, so it neither
    hides this dataset's nor draws advice to overwrite it; a metadata file that is
    not a readable JSON object counts as this dataset's, for its reader to report."""
    for candidate in (data_dir, os.path.join(data_dir, name)):
        path = os.path.join(candidate, metadata)
        if not os.path.isfile(path):
            continue
        meta = json_or_none(path)  # None: unreadable, for its reader to report
        if not isinstance(meta, dict) or ours(meta):
            return candidate
    return None


def other_kind(meta: object, path: str, kind: str, out_name: str) -> str | None:
    """Why the directory of the metadata file `path` cannot take a `kind` cache, when
    its content `meta` is another dataset's cache (`cache_kind`) or a JSON object
    that is no seqkit cache's, or `None`. The generated caches share file names
    (`metadata.json`, `{split}_labels.npy`), so writing one there destroys what is
    there, `--overwrite` or not; the reason names a directory to use instead
    (`directory/out_name`)."""
    if not isinstance(meta, dict):
        return None  # unreadable: for the reader to report
    other = cache_kind(meta)
    if other == kind:
        return None
    directory = os.path.dirname(path)
    if other is None:
        keys = ", ".join(map(repr, list(meta)[:5])) or "none"
        return (
            f"{path} is not a seqkit cache's metadata (expected a 'kind', got the keys {keys}); a {kind} "
            f"cache in {directory} would replace it: choose another directory, e.g. "
            f"{os.path.join(directory, out_name)}"
        )
    return (
        f"{directory} holds a {other} cache ({path} has kind {other!r}), not a {kind} cache; "
        f"a {kind} cache there would replace its files: choose another directory, e.g. "
        f"{os.path.join(directory, out_name)}"
    )


def other_cache(directory: str, metadata: str, kind: str, out_name: str) -> str | None:
    """`other_kind` for the `metadata` file in `directory`, read here (for writers,
    before they write there)."""
    path = os.path.join(directory, metadata)
    return other_kind(json_or_none(path), path, kind, out_name)


LARGER_CACHE = ", or write a larger cache (a larger --size)"
"""`split_size`'s `more` for the generated caches."""


def split_size(size: int | None, available: int, split: str, what: str, more: str = "") -> int:
    """How many examples to read from a `split` that holds `available`: all of them
    when `size` is None, else `size`, refused unless `0 <= size <= available`.

    The error says what the split is (`what`, e.g. "the cached train split"), the
    setting to lower (`data.{split}_size` in `seqkit train`, `size` in
    `make_source`), and `more`: another way out, e.g. a larger cache."""
    if size is None:
        return int(available)
    if not 0 <= size <= available:
        raise ValueError(
            f"expected 0 <= size <= {available} ({what}), got {size}: lower data.{split}_size "
            f"(seqkit train) or size (make_source) to at most {available}{more}"
        )
    return int(size)


def one_line(e: BaseException) -> str:
    """An exception as `Type: message` on one line, for messages that quote a cause."""
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


class FileCheck(NamedTuple):
    """One file or folder a dataset reads, as `seqkit data check` reports it.

    `path`: where it must be; `present`: whether it is there and usable; `note`:
    what it is and how to get it (one line); `problem`: for a file that is there
    but not used, why: `"bad"` (truncated, corrupt, of another size or format),
    `"mismatch"` (a cache written with other settings) or `"unused"` (another of
    the alternatives is read instead); empty otherwise.
    """

    path: str
    present: bool
    note: str
    problem: str = ""

    @property
    def status(self) -> str:
        """The word `seqkit data check` prints: `ok`, `missing`, or the `problem`."""
        if self.present:
            return "ok"
        return self.problem or "missing"


def check_archive(path: str, size: int) -> str | None:
    """Why the archive at `path` is not the standard download of `size` bytes (its
    size differs, or it does not start as a gzip file does), or `None`; `None` too
    when nothing is there. Reads two bytes, not the archive."""
    try:
        found = os.path.getsize(path)
        with open(path, "rb") as f:
            magic = f.read(2)
    except OSError:
        return None
    if found != size:
        return f"expected {size:,} bytes (the standard archive), got {found:,}: truncated or another file"
    if magic != b"\x1f\x8b":
        return (
            f"expected a gzip file (starting with 1f 8b), got one starting with {magic.hex(' ') or 'nothing'}"
        )
    return None


def archive_or_folder(
    archive: str,
    archive_note: str,
    size: int,
    folder: str,
    missing: list[str],
    parts: int,
    folder_note: str,
) -> list[FileCheck]:
    """The two alternatives of a downloaded corpus, as `seqkit data check` reports them.

    The archive counts as present when it has the standard download's `size` in
    bytes and starts as a gzip file does (not read further: `check_archive`); one
    that is there but fails that is `"bad"`, with the reason and to download it
    again. The extracted folder counts when none of its `parts` is in `missing`.
    A folder holding some parts but not all is read first (and refused), so the
    archive is `"unused"` while it is there; the folder's note lists what it lacks.
    """
    there = os.path.isfile(archive)
    if there and (reason := check_archive(archive, size)):
        archive_check = FileCheck(archive, False, f"{archive_note}; {reason}; download it again", "bad")
    else:
        archive_check = FileCheck(archive, there, archive_note)
    if 0 < len(missing) < parts:
        folder_note = f"{folder_note}; lacks {', '.join(missing)}"
        if archive_check.present:
            note = f"{archive_note}; not used while the incomplete folder below is there"
            archive_check = FileCheck(archive, False, note, "unused")
    return [archive_check, FileCheck(folder, not missing, folder_note)]


def check_same_settings(out_dir: str, what: str, old: dict, new: dict) -> None:
    """A `ValueError` showing the differing keys when the cache in `out_dir` (a `what`
    cache, written with the settings `old`) was asked for again with other settings
    `new` and no `overwrite`."""
    differ = [k for k in new if old.get(k) != new[k]]
    if not differ:
        return
    found = "; ".join(f"{k} {old.get(k)}" for k in differ)
    asked = "; ".join(f"{k} {new[k]}" for k in differ)
    raise ValueError(
        f"{out_dir} holds a {what} cache written with other settings: it has {found}, "
        f"asked for {asked}; pass overwrite=True (--overwrite) or choose another directory"
    )
