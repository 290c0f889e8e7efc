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
) -> grain.MapDataset:
    """The grain `MapDataset` of batches behind `batches`: element `k` is global batch `k`.

    Epoch `e` is shuffled with seed `seed + e` (grain's per-epoch reshuffle) and
    batched within the epoch; `num_epochs=None` repeats forever.
    """
    if batch_size < 1:
        raise ValueError(f"expected batch_size >= 1, got {batch_size}")
    if not 0 <= seed < 2**32:
        raise ValueError(f"expected 0 <= seed < 2**32, got {seed}")
    if num_epochs is not None and num_epochs < 1:
        raise ValueError(f"expected num_epochs >= 1 or None, got {num_epochs}")
    n = len(source)
    if n == 0 or (drop_remainder and n < batch_size):
        raise ValueError(
            f"a source of {n} examples gives no batch of {batch_size}"
            + (" (drop_remainder=True)" if drop_remainder else "")
        )
    ds = grain.MapDataset.source(source)
    if shuffle:
        ds = ds.shuffle(seed=int(seed))
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    return ds.repeat(num_epochs)


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
) -> Iterator[dict[str, np.ndarray]]:
    """Iterate batches `dict(inputs=(B, ...), label=(B,))` of a random-access source.

    Batch `k` is a pure function of `(source, batch_size, seed, k)`: epoch `e` is
    a permutation of the source seeded by `seed + e`, cut into consecutive batches
    (the last partial batch of an epoch is dropped with `drop_remainder`).
    Resuming with `start_step=k` yields exactly batches `k, k+1, ...` of an
    uninterrupted run, for any `worker_count`.

    **Arguments:**

    - `source`: `len(source)` and `source[i] -> dict(inputs=..., label=...)`.
    - `batch_size`, `seed` (`0 <= seed < 2**32`), `shuffle`, `drop_remainder`.
    - `start_step`: global index of the first batch to yield.
    - `num_epochs`: `None` repeats forever.
    - `worker_count`: grain worker processes (0: threads in this process). The
      source is pickled to each worker.
    - `worker_buffer_size`: batches each worker prepares ahead.

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
    )
    ds = ds[start_step:]
    # Each element is a whole batch: two reader threads keep two cores busy without
    # holding hundreds of batches in memory.
    it = ds.to_iter_dataset(grain.ReadOptions(num_threads=2, prefetch_buffer_size=4))
    if worker_count > 0:
        _mark_flags_parsed()
        it = it.mp_prefetch(
            grain.MultiprocessingOptions(
                num_workers=worker_count, per_worker_buffer_size=worker_buffer_size
            )
        )
    return iter(it)
