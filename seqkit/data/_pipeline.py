"""Batches from a random-access source with grain: seeded per-epoch shuffle, exact resume."""

from __future__ import annotations

from collections.abc import Iterator

import grain
import numpy as np


def _mark_flags_parsed():
    # grain worker processes read absl flags; outside an absl app they are unparsed
    # and the workers fail at start-up.
    try:
        from absl import flags
    except ImportError:  # pragma: no cover - absl ships with grain
        return
    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()


def batch_dataset(
    source,
    *,
    batch_size: int,
    seed: int,
    shuffle: bool = True,
    drop_remainder: bool = True,
    num_epochs: int | None = None,
    consecutive: bool = False,
    process_index: int = 0,
    process_count: int = 1,
) -> grain.MapDataset:
    """The grain `MapDataset` of batches behind `batches`: element `k` is global batch
    `k` (with `process_count > 1`, this process's rows of it).

    Epoch `e` is shuffled with seed `seed + e` (grain's per-epoch reshuffle) and
    batched within the epoch; `num_epochs=None` repeats forever. With
    `consecutive`, the source is cut into groups of `batch_size` consecutive
    examples first and the groups are shuffled, not the examples.
    """
    if batch_size < 1:
        raise ValueError(f"expected batch_size >= 1, got {batch_size}")
    if not 0 <= seed < 2**32:
        raise ValueError(f"expected 0 <= seed < 2**32, got {seed}")
    if num_epochs is not None and num_epochs < 1:
        raise ValueError(f"expected num_epochs >= 1 or None, got {num_epochs}")
    if not 0 <= process_index < process_count:
        raise ValueError(f"expected 0 <= process_index < process_count={process_count}, got {process_index}")
    if batch_size % process_count:
        raise ValueError(
            f"expected a batch_size divisible by process_count={process_count} "
            f"(each process reads an equal part of every batch), got {batch_size}"
        )
    if process_count > 1 and not drop_remainder:
        raise ValueError(
            "process_count > 1 needs drop_remainder=True (every process must yield as many "
            "batches; pad the source to whole batches instead)"
        )
    n = len(source)
    if n == 0 or (drop_remainder and n < batch_size):
        raise ValueError(
            f"a source of {n} examples gives no batch of {batch_size}"
            + (" (drop_remainder=True)" if drop_remainder else "")
        )
    ds = grain.MapDataset.source(source)
    if consecutive:  # batch first: each batch stays examples gB, ..., gB + B - 1 in order
        ds = _batch(ds, batch_size, drop_remainder, process_index, process_count)
        if shuffle:
            ds = ds.shuffle(seed=int(seed))
        return ds.repeat(num_epochs)
    if shuffle:
        ds = ds.shuffle(seed=int(seed))
    ds = _batch(ds, batch_size, drop_remainder, process_index, process_count)
    return ds.repeat(num_epochs)


def _batch(
    ds: grain.MapDataset, batch_size: int, drop_remainder: bool, process_index: int, process_count: int
) -> grain.MapDataset:
    """`ds` cut into consecutive batches of `batch_size`; with `process_count > 1`
    (and `drop_remainder`), this process's rows of each."""
    if process_count == 1:
        return ds.batch(batch_size, drop_remainder=drop_remainder)
    # Batch k is positions [kB, (k+1)B) of `ds`; process p reads only positions
    # [kB + pb, kB + (p+1)b) of it, b = B / process_count.
    rows = batch_size // process_count
    return ds[: len(ds) // batch_size * batch_size].batch(rows)[process_index::process_count]


def batches(
    source,
    *,
    batch_size: int,
    seed: int,
    shuffle: bool = True,
    drop_remainder: bool = True,
    start_step: int = 0,
    num_epochs: int | None = None,
    worker_count: int = 0,
    worker_buffer_size: int = 2,
    consecutive: bool = False,
    process_index: int = 0,
    process_count: int = 1,
) -> Iterator[dict[str, np.ndarray]]:
    """Iterate batches `dict(inputs=(B, ...), label=(B,))` of a random-access source.

    Batch `k` is a pure function of `(source, batch_size, seed, k)`: epoch `e` is
    a permutation of the source seeded by `seed + e`, cut into consecutive batches
    (the last partial batch of an epoch is dropped with `drop_remainder`).
    Resuming with `start_step=k` yields exactly batches `k, k+1, ...` of an
    uninterrupted run, for any `worker_count`.

    With `consecutive=True` every batch is `batch_size` consecutive examples of
    the source, in order: batch `k` of epoch `e` is examples `g B, ..., g B + B
    - 1` (`B = batch_size`) with `g` the `k`-th entry of a permutation,
    seeded by `seed + e`, of the `len(source) // B` groups (with
    `drop_remainder=False` also the partial last one). For a source of
    consecutive chunks of one text (`ByteSource`) a batch's rows are then
    consecutive segments of the text, what TRIME's long-term memory
    (`trainer.objective=trime_long`) needs.
    Without `shuffle` both orders are the same: batches of consecutive examples.

    **Arguments:**

    - `source`: `len(source)` and `source[i] -> dict(inputs=..., label=...)`.
    - `batch_size`, `seed` (`0 <= seed < 2**32`), `shuffle`, `drop_remainder`.
    - `start_step`: global index of the first batch to yield.
    - `num_epochs`: `None` repeats forever.
    - `worker_count`: grain worker processes (0: two reader threads in this
      process). The source is pickled to each worker. Sources that generate in
      Python (Pathfinder on the fly) hold the GIL, so threads barely overlap with
      the training step: use `worker_count >= 1` or a cache for them.
    - `worker_buffer_size`: batches each worker prepares ahead.
    - `process_index`, `process_count`: in a run of several processes, yield
      only process `p`'s rows of every global batch, rows
      `[p * B / P, (p + 1) * B / P)` (`B = batch_size` divisible by
      `P = process_count`; `drop_remainder=True`); only those examples are read.
      The processes' parts put side by side are the one-process batch.
    - `consecutive`: shuffle groups of `batch_size` consecutive examples, not
      examples (see above).

    **Returns:**

    An iterator of dicts of NumPy arrays with a leading batch axis.
    """
    if start_step < 0:
        raise ValueError(f"expected start_step >= 0, got {start_step}")
    if worker_count < 0:
        raise ValueError(f"expected worker_count >= 0, got {worker_count}")
    ds = batch_dataset(
        source,
        batch_size=batch_size,
        seed=seed,
        shuffle=shuffle,
        drop_remainder=drop_remainder,
        num_epochs=num_epochs,
        consecutive=consecutive,
        process_index=process_index,
        process_count=process_count,
    )
    ds = ds[start_step:]
    # Each element is a whole batch: two reader threads keep two cores busy without
    # holding hundreds of batches in memory.
    it = ds.to_iter_dataset(grain.ReadOptions(num_threads=2, prefetch_buffer_size=4))
    if worker_count > 0:
        _mark_flags_parsed()
        it = it.mp_prefetch(
            grain.MultiprocessingOptions(num_workers=worker_count, per_worker_buffer_size=worker_buffer_size)
        )
    return iter(it)
