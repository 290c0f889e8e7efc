"""`check_dataset`: which files a dataset reads, which are there and where the others go
(behind `seqkit data check NAME --data-dir DIR`).

Each dataset has a `Checker`: a function `files(data_dir, **options) ->
list[FileCheck]` from the module that reads the files, and how to judge them.
A dataset read by a new module is added with one line, e.g.
`CHECKERS["name"] = Checker(_module.check_files)`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import NamedTuple

from seqkit._paths import expand_path

from . import _aan, _bytes, _cifar, _imdb, _listops, _pathfinder
from ._cifar import NoDataDirError
from ._files import DataError, FileCheck, find_cache
from ._lra_release import (
    PATHFINDER_FOLDERS,
    check_listops_files,
    check_pathfinder_files,
)


class Checker(NamedTuple):
    """How `check_dataset` checks one dataset.

    - `files`: `files(data_dir, **options) -> list[FileCheck]`; `data_dir` is the
      expanded directory, or None (then a reader that needs files falls back to
      `$SEQKIT_DATA` or raises `DataNotFoundError`).
    - `either`: the files are alternatives (an archive or its extracted folder): one
      present is enough. Otherwise every file is needed.
    - `generated`: without a data directory the examples are generated, so nothing
      is needed.
    - `options`: the keyword options `files` accepts.
    - `otherwise`: what else can be done when files are missing (`{out}`, the
      cache folder `DIR/NAME`, `{level}`, ` --contour-length N`, and `{style}`,
      ` --style S`, are filled in).
    """

    files: Callable[..., list[FileCheck]]
    either: bool = False
    generated: bool = False
    options: tuple[str, ...] = ()
    otherwise: str = ""


class DataCheck(NamedTuple):
    """The result of `check_dataset`: the files, whether the dataset can be read,
    and a one-line summary."""

    name: str
    files: list[FileCheck]
    complete: bool
    summary: str


def _cache(
    directory: str, name: str, metadata: str, what: str, command: str, ours: Callable[[dict], bool]
) -> list[FileCheck] | None:
    """The metadata of this dataset's generated cache (`ours`) in `directory` or
    `directory/name`, if one is there (another dataset's cache is passed over, as
    the readers do)."""
    found = find_cache(directory, name, metadata, ours)
    if found is None:
        return None
    path = os.path.join(found, metadata)
    return [FileCheck(path, True, f"a {what} cache written by `{command}`; its arrays are checked when read")]


def _unusable(path: str, e: ValueError) -> FileCheck:
    """A cache's metadata file that its reader refuses: `"bad"` when unreadable (a
    `DataError`), `"mismatch"` when written with other settings; the note is the
    reader's message, which says how to write the cache again."""
    return FileCheck(path, False, str(e).splitlines()[0], "bad" if isinstance(e, DataError) else "mismatch")


def _pathfinder_files(name: str):
    def ours(meta: dict) -> bool:
        return _pathfinder.is_pathfinder_cache(meta, name)

    def files(data_dir: str, contour_length: int = 14, style: str = "lra") -> list[FileCheck]:
        _pathfinder.pathfinder_config(name, contour_length, style)  # ValueError for an unknown level or style
        cached = _cache(data_dir, name, _pathfinder.METADATA, "Pathfinder", "seqkit data pathfinder", ours)
        if not cached:
            return check_pathfinder_files(data_dir, name, contour_length)
        path = cached[0].path
        try:
            meta = _pathfinder.read_pathfinder_metadata(os.path.dirname(path))
            # What make_source requires of it: preset, level, style and generator version.
            _pathfinder.check_pathfinder_cache(meta, os.path.dirname(path), name, contour_length, style)
        except ValueError as e:  # a DataError (unreadable) or the level/style mismatch
            return [_unusable(path, e)]
        return cached

    return files


def _listops_files(data_dir: str) -> list[FileCheck]:
    cached = _cache(
        data_dir,
        "listops",
        _listops.METADATA,
        "ListOps",
        "seqkit data listops",
        _listops.is_listops_cache,
    )
    if not cached:
        return check_listops_files(data_dir)
    path = cached[0].path
    try:
        meta = _listops.read_listops_metadata(os.path.dirname(path))
        # What make_source requires of it: this generator version, LRA's configuration.
        _listops.check_listops_cache(meta, os.path.dirname(path), _listops.ListOpsConfig())
    except ValueError as e:  # a DataError (unreadable), or another version or configuration
        return [_unusable(path, e)]
    return cached


_GENERATE = "or give no data directory (`--set data.data_dir=none`) to generate the examples on the fly"

CHECKERS: dict[str, Checker] = {
    **{
        name: Checker(
            _pathfinder_files(name),
            generated=True,
            options=("contour_length", "style"),
            otherwise=(
                f"or write a cache with `seqkit data pathfinder --preset {name}{{level}}{{style}} "
                f"--size N --out {{out}}`, {_GENERATE}"
            ),
        )
        for name in PATHFINDER_FOLDERS
    },
    "listops": Checker(
        _listops_files,
        generated=True,
        otherwise=f"or write a cache with `seqkit data listops --size N --out {{out}}`, {_GENERATE}",
    ),
    "scifar": Checker(_cifar.check_files, either=True),
    "cifar_gray": Checker(_cifar.check_files, either=True),
    "imdb": Checker(_imdb.check_files, either=True),
    "aan": Checker(_aan.check_files),
    # pytext reads this Python's standard library: nothing to put anywhere.
    "pytext": Checker(_bytes.check_pytext_files),
    "enwik8": Checker(_bytes.check_enwik8_files, either=True),
    "text8": Checker(_bytes.check_text8_files, either=True),
}


# How `seqkit data check` and `check_dataset` take a data directory.
_CHECK_WAYS = "`--data-dir DIR` (seqkit data check), data_dir=DIR (check_dataset)"

# The metadata files of seqkit's caches: a check that lists one found a cache there.
_CACHE_METADATA = frozenset({_pathfinder.METADATA, _listops.METADATA})


def _ready(name: str, files: list[FileCheck], either: bool) -> str:
    """The summary of a dataset that can be read: the file read, or that all are there."""
    if either:
        return f"{name}: ready ({next(f.path for f in files if f.present)} is there)"
    return f"{name}: ready (all {len(files)} there)"


def _refused_cache(name: str, cache: FileCheck) -> str:
    """The summary when a cache of this dataset is there but refused (its line says
    how to write it again, in the directory where the reader finds it)."""
    what = "an unreadable cache" if cache.problem == "bad" else "a cache written with other settings"
    return (
        f"{name}: not ready: {os.path.dirname(cache.path)} holds {what} ({cache.problem} above); "
        f"write it again as that line says (or into another directory, and give that one), {_GENERATE}"
    )


def _not_ready(name: str, files: list[FileCheck], either: bool) -> str:
    """The summary of a dataset that cannot be read: what to put where, and which
    files are there but unusable (their lines say why)."""
    unusable = [f for f in files if f.problem in ("bad", "mismatch")]
    if either:
        if not unusable:
            return f"{name}: missing: put one of the {len(files)} above where shown"
        return (
            f"{name}: not ready: {unusable[0].path} is there but {unusable[0].problem} (see its line); "
            f"replace it, or put another of the {len(files)} above where shown"
        )
    counts = {}
    for f in files:
        if not f.present:
            counts[f.status] = counts.get(f.status, 0) + 1
    found = ", ".join(f"{n} of {len(files)} {status}" for status, n in counts.items())
    advice = "put or replace each as its line says" if unusable else "put each where shown"
    return f"{name}: {found}: {advice}"


def check_dataset(name: str, data_dir: str | os.PathLike | None = None, **options) -> DataCheck:
    """Which files dataset `name` reads from `data_dir`, which are there and where the others go.

    **Arguments:**

    - `name`: a key of `CHECKERS` (the datasets of `DATASETS` that read files).
    - `data_dir`: the data directory (`~` and `$VAR` expanded). Generated datasets
      (Pathfinder, ListOps) need nothing without one; with one, they read a cache
      written by seqkit or the LRA release files there. CIFAR-10, IMDb, AAN, enwik8
      and text8 default to `$SEQKIT_DATA`; `pytext` needs no files to be put
      anywhere (it reads this Python's standard library, listed as its one file).
    - `options`: `contour_length` (6, 9 or 14; default 14) and `style` (`"lra"` or
      `"continuous"`; default `"lra"`) for Pathfinder: a cache must match both, and
      the generator version of its style, as `make_source` requires.

    **Returns:**

    A `DataCheck`: `files` (one `FileCheck` per file or folder: path, present,
    note), `complete` (True when the dataset can be read: every file there, or one
    of the alternatives) and `summary` (one line).

    Raises `ValueError` for an unknown name or option, `DataNotFoundError` when a
    dataset that needs files has no data directory.
    """
    if name not in CHECKERS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {sorted(CHECKERS)}")
    checker = CHECKERS[name]
    unknown = sorted(k for k, v in options.items() if v is not None and k not in checker.options)
    if unknown:
        # named as Python and the command line spell them: contour_length (--contour-length)
        def spelled(k):
            return f"{k} (--{k.replace('_', '-')})"

        accepted = ", ".join(map(spelled, checker.options)) or "none"
        raise ValueError(
            f"option(s) {', '.join(map(spelled, unknown))} do not apply to {name!r}; accepted: {accepted}"
        )
    options = {k: v for k, v in options.items() if v is not None}
    if data_dir is None and checker.generated:
        return DataCheck(
            name,
            [],
            True,
            f"{name}: generated on the fly, no files needed (give a data directory to check a cache "
            f"or the LRA release files there)",
        )
    directory = None if data_dir is None else expand_path(data_dir)
    try:
        files = checker.files(directory, **options)
    except NoDataDirError as e:  # said as this command and function take a directory
        raise NoDataDirError(e.what, e.needs, _CHECK_WAYS) from None
    complete = any(f.present for f in files) if checker.either else all(f.present for f in files)
    if complete:
        return DataCheck(name, files, True, _ready(name, files, checker.either))
    cache = next((f for f in files if os.path.basename(f.path) in _CACHE_METADATA), None)
    if cache is not None:  # a cache of this dataset, refused: writing one elsewhere would not help
        return DataCheck(name, files, False, _refused_cache(name, cache))
    summary = _not_ready(name, files, checker.either)
    if checker.otherwise:
        where = directory if directory is not None else "DIR"
        level = options.get("contour_length", 14)
        level = f" --contour-length {level}" if level != 14 else ""
        style = options.get("style", "lra")
        style = f" --style {style}" if style != "lra" else ""
        summary += "; " + checker.otherwise.format(out=os.path.join(where, name), level=level, style=style)
    return DataCheck(name, files, complete, summary)
