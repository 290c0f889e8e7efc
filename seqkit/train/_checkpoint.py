"""Atomic checkpoints: one file holding a JSON header and the serialised pytree."""

import glob
import json
import os
import tempfile
from typing import Any

import equinox as eqx
from jaxtyping import PyTree

# What an interrupted atomic write leaves behind: `save_checkpoint`'s, `write_json`'s
# and `MetricsLog.truncate`'s temporaries, removed by `remove_temporaries` on the next start.
_TEMPORARY_PATTERNS = (".ckpt-*", "*.json.tmp", "*.jsonl.tmp")


class CheckpointError(ValueError):
    """A checkpoint or run file that cannot be read (truncated, corrupt, another format)."""


def _file_mode() -> int:
    """The mode a plainly created file gets here: 0o666 less the process umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def remove_temporaries(directory: str | os.PathLike) -> list[str]:
    """Delete the temporaries of interrupted atomic writes in `directory`; return their paths."""
    found = sorted(
        p for pattern in _TEMPORARY_PATTERNS for p in glob.glob(os.path.join(os.fspath(directory), pattern))
    )
    for p in found:
        os.remove(p)
    return found


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write `data` to `path` as JSON, atomically (a temporary file flushed to disk,
    then `os.replace`)."""
    path = os.fspath(path)
    tmp = path + ".tmp"
    try:
        with open(tmp, "w") as f:
            json.dump(data, f, indent=2)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def read_json(path: str | os.PathLike, what: str) -> Any:
    """`path`'s JSON content; a `CheckpointError` naming the file when it is not JSON."""
    path = os.fspath(path)
    try:
        with open(path) as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path} is not readable: expected {what} (JSON), got {e}") from None


def save_checkpoint(path: str | os.PathLike, tree: PyTree, meta: dict[str, Any]) -> None:
    """Write `meta` (JSON) and `tree`'s leaves to `path` atomically.

    The file is written to a temporary name in the same directory, flushed to disk,
    and moved over `path` with `os.replace`, so a reader (or a restarted run) sees
    either the old checkpoint or the new one, never a partial file — whenever the
    writer is killed.

    **Arguments:** `path`; `tree`, any pytree of arrays (model, state, optimizer
    state, ...); `meta`, JSON-serialisable values (step, seed, data position, ...).
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".ckpt-", dir=directory)
    try:
        os.fchmod(fd, _file_mode())  # mkstemp makes 0600; a checkpoint is as readable as its run's files
        with os.fdopen(fd, "wb") as f:
            f.write(json.dumps(meta).encode() + b"\n")
            eqx.tree_serialise_leaves(f, tree)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def load_checkpoint(path: str | os.PathLike, like: PyTree) -> tuple[PyTree, dict[str, Any]]:
    """Read a checkpoint written by `save_checkpoint`.

    **Arguments:** `path`; `like`, a pytree with the structure, shapes and dtypes of
    the saved one (e.g. a freshly built model and optimizer state).

    **Returns:** `(tree, meta)`.

    **Raises:** `CheckpointError` naming the file when it is truncated, corrupt, or
    holds a tree of another structure (e.g. a different model configuration).
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        header = f.readline()
        try:
            meta = json.loads(header)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise CheckpointError(
                f"{path} is not a seqkit checkpoint: expected a JSON header line, "
                f"got {header[:40]!r}{'...' if len(header) > 40 else ''}"
            ) from None
        try:
            tree = eqx.tree_deserialise_leaves(f, like)
            trailing = f.read(1)
        except Exception as e:  # numpy/equinox raise several types for a short or foreign file
            reason = str(e).strip().splitlines()[0] if str(e).strip() else ""
            raise CheckpointError(
                f"{path} is truncated, corrupt or of another configuration: expected the serialised "
                f"model and optimizer state of this recipe after its header ({type(e).__name__}: {reason})"
            ) from None
    if not isinstance(meta, dict) or trailing:
        raise CheckpointError(f"{path} is not a seqkit checkpoint of this run: unexpected layout")
    return tree, meta
