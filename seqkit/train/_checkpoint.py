"""Atomic checkpoints: one file holding a JSON header and the serialised pytree."""

import json
import os
import tempfile
from typing import Any

import equinox as eqx
from jaxtyping import PyTree


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
    """
    with open(path, "rb") as f:
        meta = json.loads(f.readline())
        tree = eqx.tree_deserialise_leaves(f, like)
    return tree, meta
