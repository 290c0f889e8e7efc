"""Training over several processes (hosts): `jax.distributed` joined from the
environment, each process reading its own rows of every batch, one process writing."""

import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils
from jaxtyping import PyTree

ENV_VARS = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")


def _int_var(environ: Mapping[str, str], name: str) -> int:
    try:
        return int(environ[name])
    except ValueError:
        raise ValueError(f"expected an int in {name}; got {environ[name]!r}") from None


def _slurm_step(environ: Mapping[str, str]) -> bool:
    """Whether this is one task of a SLURM job step of several tasks (`srun -n N`,
    N > 1): the variables JAX's SLURM detection reads are all set. The batch
    script's own step has one task, so a plain `seqkit train` in it stays alone."""
    needed = ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS", "SLURM_PROCID", "SLURM_LOCALID")
    if not all(k in environ for k in needed):
        return False
    return (
        _int_var(environ, "SLURM_STEP_NUM_TASKS" if "SLURM_STEP_NUM_TASKS" in environ else "SLURM_NTASKS") > 1
    )


def init_distributed(environ: Mapping[str, str] | None = None) -> bool:
    """Join a multi-process run when the environment describes one; return whether
    this process is part of one (`jax.distributed` initialized).

    The environment describes a run in one of two ways:

    - `JAX_COORDINATOR_ADDRESS` (`host:port` where process 0 listens),
      `JAX_NUM_PROCESSES` and `JAX_PROCESS_ID` (`0` to `N - 1`), set for every
      process;
    - a SLURM job step of several tasks (`srun -n N ...`): JAX reads the
      coordinator (the step's first node), the count and the id from SLURM's
      variables (`JAX_COORDINATOR_PORT` picks the port).

    Otherwise it does nothing (and when `jax.distributed` is already initialized
    it only says so). It must run before JAX computes anything; `seqkit train`
    calls it first. On CPUs the processes exchange data with gloo over TCP, JAX's
    default `jax_cpu_collectives_implementation`.

    **Arguments:** `environ`, the variables to read (default `os.environ`).

    **Raises:** `ValueError` when only some of the three `JAX_*` variables are
    set, or the count or id is not an int with `0 <= id < count`.
    """
    environ = os.environ if environ is None else environ
    if jax.distributed.is_initialized():
        return True
    given = [k for k in ENV_VARS if environ.get(k)]
    if given:
        missing = [k for k in ENV_VARS if k not in given]
        if missing:
            raise ValueError(
                f"a multi-process run needs all of {', '.join(ENV_VARS)}; got {', '.join(given)} "
                f"without {', '.join(missing)}"
            )
        count, index = _int_var(environ, "JAX_NUM_PROCESSES"), _int_var(environ, "JAX_PROCESS_ID")
        if not 0 <= index < count:
            raise ValueError(f"expected 0 <= JAX_PROCESS_ID < JAX_NUM_PROCESSES={count}; got {index}")
        jax.distributed.initialize(environ["JAX_COORDINATOR_ADDRESS"], count, index)
        return True
    if _slurm_step(environ):
        jax.distributed.initialize(cluster_detection_method="slurm")
        return True
    return False


def is_main_process() -> bool:
    """Whether this process writes the run's files and prints its progress
    (process 0; the only process of a one-process run)."""
    return jax.process_index() == 0


def process_part() -> dict[str, int]:
    """What `seqkit.data.batches` needs to yield only this process's rows of every
    batch: `{"process_index", "process_count"}`, or `{}` in a one-process run (so
    a `batches` function without these options still serves one process)."""
    count = jax.process_count()
    return {} if count == 1 else {"process_index": jax.process_index(), "process_count": count}


def host_arrays(tree: PyTree) -> PyTree:
    """`tree` with every array whose whole value this process cannot read (split
    over processes) gathered into a NumPy array; arrays replicated over processes
    become their local copy, other leaves stay as they are. Every process of a
    run must call it (a gather is a collective), before process 0 writes."""

    def one(x):
        if not isinstance(x, jax.Array) or x.is_fully_addressable:
            return x
        if x.is_fully_replicated:
            return np.asarray(x.addressable_data(0))
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))

    return jax.tree.map(one, tree)


class _Padded:
    """`source` extended to `size` examples by repeating its last one (padding an
    evaluation pass to whole batches; the repeats get zero weight)."""

    def __init__(self, source: Any, size: int):
        self.source, self.size = source, size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, i: int):
        return self.source[min(int(i), len(self.source) - 1)]


def process_eval_batches(
    batches: Callable[..., Iterator[Mapping[str, np.ndarray]]], source: Any, batch_size: int
) -> Iterator[tuple[dict[str, np.ndarray], np.ndarray, int]]:
    """One evaluation pass over `source` in a multi-process run: for every global
    batch (the last one padded to `batch_size`), this process's rows, their weights
    (0 for padding) and the number of real examples in the global batch.

    Every process yields the same number of batches, each with
    `batch_size / jax.process_count()` rows."""
    n, count, index = len(source), jax.process_count(), jax.process_index()
    rows = batch_size // count
    size = -(-n // batch_size) * batch_size
    it = batches(
        _Padded(source, size),
        batch_size=batch_size,
        seed=0,
        shuffle=False,
        drop_remainder=True,
        num_epochs=1,
        process_index=index,
        process_count=count,
    )
    for k, batch in enumerate(it):
        first = k * batch_size + index * rows
        weight = (np.arange(first, first + rows) < n).astype(np.float32)
        yield dict(batch), weight, min(batch_size, n - k * batch_size)
