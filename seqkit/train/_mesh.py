"""Training over a device mesh: the batch split over a `data` axis, parameters
replicated or sharded over a `model` axis (FSDP-style); in a run of several
processes the `data` axis spans them and each `model` group stays in one."""

import math
from collections.abc import Callable, Mapping

import equinox as eqx
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from jaxtyping import PyTree

MESH_AXES = ("data", "model")


def no_mesh(spec: str) -> bool:
    """Whether a mesh spec asks for no mesh: `""` or `"none"` (any case, spaces around)."""
    return spec.strip().lower() in ("", "none")


def parse_mesh(spec: str) -> dict[str, int]:
    """The axis sizes of a mesh spec: `"data:8"` -> `{"data": 8, "model": 1}`.

    `spec` is comma-separated `AXIS:SIZE` entries with `AXIS` one of `data`,
    `model` (each at most once, any order); an axis left out has size 1, and `""`
    or `"none"` means no mesh (`{}`).

    **Raises:** `ValueError` saying what was expected and what came.
    """
    if no_mesh(spec):
        return {}
    spec = spec.strip()
    sizes: dict[str, int] = {}
    for entry in spec.split(","):
        name, sep, size = entry.strip().partition(":")
        name = name.strip()
        if not sep:
            raise ValueError(f"expected AXIS:SIZE entries such as data:8 or data:4,model:2; got {entry!r}")
        if name not in MESH_AXES:
            raise ValueError(f"expected axis names {' or '.join(MESH_AXES)}; got {name!r} in {spec!r}")
        if name in sizes:
            raise ValueError(f"expected each axis at most once; got {name!r} twice in {spec!r}")
        try:
            n = int(size)
        except ValueError:
            raise ValueError(f"expected an int size for axis {name!r}; got {size.strip()!r}") from None
        if n < 1:
            raise ValueError(f"expected a size >= 1 for axis {name!r}; got {n}")
        sizes[name] = n
    return {a: sizes.get(a, 1) for a in MESH_AXES}


def mesh_text(sizes: Mapping[str, int]) -> str:
    """`{"data": 4, "model": 2}` -> `"data:4,model:2"` (axes of size 1 left out, but
    never all of them)."""
    parts = [f"{a}:{n}" for a, n in sizes.items() if n > 1]
    return ",".join(parts) or "data:1"


def make_mesh(spec: str) -> Mesh:
    """A `jax.sharding.Mesh` with axes `("data", "model")` over the first
    `data * model` devices (`model` the faster-varying axis, so a model-sharded
    group sits on neighbouring devices).

    In a run of `P > 1` processes (`jax.process_count()`) the mesh takes the
    first `data * model / P` devices of each process, process by process: the
    `data` axis spans the processes, process `p` holds rows
    `[p * data / P, (p + 1) * data / P)` of it (so its part of every batch is
    rows `[p * B / P, (p + 1) * B / P)`), and each `model` group stays within one
    process.

    **Arguments:** `spec`, as `seqkit.train.parse_mesh` takes it (not empty).

    **Raises:** `ValueError` for a bad spec, more devices than `jax.devices()`
    has, or (several processes) a `data` size not a multiple of the process count
    or more devices per process than a process has.
    """
    sizes = parse_mesh(spec)
    if not sizes:
        raise ValueError("expected a mesh spec such as data:8 or data:4,model:2; got ''")
    check_processes(sizes)
    n = math.prod(sizes.values())
    devices = jax.devices()
    if n > len(devices):
        raise ValueError(f"mesh {spec} needs {n} devices; {len(devices)} exist")
    count = jax.process_count()
    if count > 1:
        per = n // count
        devices = [d for p in range(count) for d in [d for d in devices if d.process_index == p][:per]]
    grid = np.array(devices[:n], dtype=object).reshape(tuple(sizes[a] for a in MESH_AXES))
    return Mesh(grid, MESH_AXES)


def check_processes(sizes: Mapping[str, int]) -> None:
    """In a run of several processes, that a mesh of `sizes` (`parse_mesh`'s
    result, `{}` for none) spans them: its `data` size a multiple of the process
    count (each process feeds its own rows of every batch, and a `model` group
    stays within a process) and no more devices per process than each has.

    **Raises:** `ValueError` saying what was expected and what came.
    """
    count = jax.process_count()
    if count == 1:
        return
    example = f"data:{jax.device_count()}"
    if not sizes:
        raise ValueError(
            f"a run of {count} processes needs a mesh whose data axis spans them, e.g. {example}; got none"
        )
    if sizes["data"] % count:
        raise ValueError(
            f"expected a data axis size that is a multiple of the process count {count} (each process "
            f"reads its own rows of every batch; model groups stay within a process), got {sizes['data']}"
        )
    per, local = math.prod(sizes.values()) // count, jax.local_device_count()
    if per > local:
        raise ValueError(
            f"mesh {mesh_text(sizes)} over {count} processes needs {per} devices in each; "
            f"this process has {local}"
        )


def param_spec(shape: tuple[int, ...], model_size: int) -> P:
    """The partition of one parameter-like array: its largest dimension divisible
    by `model_size` over `model` (the first such on a tie), or replicated when
    there is none or `model_size` is 1."""
    if model_size <= 1:
        return P()
    dims = [i for i, d in enumerate(shape) if d % model_size == 0]
    if not dims:
        return P()
    i = max(dims, key=lambda j: (shape[j], -j))
    return P(*([None] * i), "model")


def _param_sharding(mesh: Mesh, x) -> NamedSharding:
    return NamedSharding(mesh, param_spec(tuple(np.shape(x)), mesh.shape["model"]))


def shard_params(tree: PyTree, mesh: Mesh) -> PyTree:
    """`tree` (a model, BatchNorm state, optimizer state, or a tuple of them) with
    every array placed on `mesh`: replicated over `data`, and over `model` each
    array split along its largest dimension divisible by the `model` size
    (replicated when none is). Non-array leaves are kept as they are.

    Optimizer moments have their parameters' shapes, so they get the same
    placement. The placement depends on shapes only, so placing a checkpoint
    loaded on the host gives the arrays of the run that wrote it.
    """
    arrays, static = eqx.partition(tree, eqx.is_array)
    placed = jax.tree.map(lambda x: jax.device_put(x, _param_sharding(mesh, x)), arrays)
    return eqx.combine(placed, static)


def constrain_params(tree: PyTree, mesh: Mesh) -> PyTree:
    """`shard_params` inside `jit`: a sharding constraint on every array of `tree`,
    so a step's outputs keep the placement of its inputs (and the next call reuses
    the compiled program)."""
    arrays, static = eqx.partition(tree, eqx.is_array)
    placed = jax.tree.map(lambda x: jax.lax.with_sharding_constraint(x, _param_sharding(mesh, x)), arrays)
    return eqx.combine(placed, static)


def shard_batch(batch: PyTree, mesh: Mesh) -> PyTree:
    """`batch` (arrays with a leading batch axis) split over the `data` axis of
    `mesh` along that axis, replicated over `model`. The batch size must be a
    multiple of the `data` size (`Recipe.validate` checks the trainer's).

    In a run of `P` processes `batch` is this process's part of the global batch
    (`B / P` rows: process `p` passes rows `[p * B / P, (p + 1) * B / P)`, as
    `seqkit.data.batches(..., process_index=p, process_count=P)` yields them)
    and the result is the global batch of `B` rows."""
    sharding = NamedSharding(mesh, P("data"))
    count = jax.process_count()
    if count == 1:
        return jax.tree.map(lambda x: jax.device_put(x, sharding), batch)

    def place(x):
        x = np.asarray(x)
        return jax.make_array_from_process_local_data(sharding, x, (x.shape[0] * count, *x.shape[1:]))

    return jax.tree.map(place, batch)


def sharded_step(step: Callable, mesh: Mesh) -> Callable:
    """`step(model, state, opt_state, batch, key)` (before `jit`) with its model,
    state and optimizer state outputs constrained to `shard_params`' placement."""

    def constrained(model, state, opt_state, batch, key):
        model, state, opt_state, metrics = step(model, state, opt_state, batch, key)
        model, state, opt_state = constrain_params((model, state, opt_state), mesh)
        return model, state, opt_state, metrics

    return constrained


def describe_mesh(mesh: Mesh) -> str:
    """`"mesh data:4,model:2 over 8 cpu devices"` (`of N` when the run has more;
    `in P processes` when it has several)."""
    sizes = dict(mesh.shape)
    n = mesh.devices.size
    total = jax.device_count()
    platform = mesh.devices.flat[0].platform
    of = f" of {total}" if total > n else ""
    count = jax.process_count()
    across = f" in {count} processes" if count > 1 else ""
    return f"mesh {mesh_text(sizes)} over {n}{of} {platform} device{'s' if n > 1 else ''}{across}"
