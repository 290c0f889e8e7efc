"""One dispatcher for every kernel: `impl="auto" | "xla" | "pallas"`.

- `"xla"`: the XLA reference implementation, on every backend.
- `"pallas"`: the Pallas kernel. On GPU and TPU it is compiled; on CPU it runs
  in Pallas's interpret mode (the kernel's own code, evaluated op by op: exact,
  slow, meant for tests). A shape, dtype or backend the kernel does not support
  is a `ValueError` naming the constraint.
- `"auto"` (the default everywhere): Pallas on GPU and TPU when the kernel
  supports the call, XLA otherwise, and always XLA on CPU.

A kernel states what it supports as a function of the call, returning `None`
(supported) or the reason it is not; the dispatcher does the rest, so every
kernel makes its choice the same way.

`impl="auto"` can be redirected for a whole computation without touching the
modules: `with seqkit.kernels.use_impl("xla"): ...` makes every `"auto"` call
traced inside the block run as `"xla"` (or `"pallas"`); an explicit `"xla"` or
`"pallas"` argument still wins. The choice is made while tracing, so the block
must enclose the first call of a jitted function (the trainer does this for
`trainer.kernels`).
"""

import contextlib
import functools
import threading
from collections.abc import Callable, Iterator
from typing import Literal, NamedTuple

import jax

Impl = Literal["auto", "xla", "pallas"]
IMPLS = ("auto", "xla", "pallas")
ACCELERATORS = ("gpu", "tpu")


class Choice(NamedTuple):
    """What to run: `impl` `"xla"` or `"pallas"`, and for Pallas whether in
    interpret mode (on CPU)."""

    impl: str
    interpret: bool = False


_default = threading.local()


def default_impl() -> str:
    """What `impl="auto"` means here: `"auto"`, or the `use_impl` block's choice."""
    return getattr(_default, "impl", "auto")


@contextlib.contextmanager
def use_impl(impl: str) -> Iterator[None]:
    """Within the block, `impl="auto"` calls run as `impl` (`"auto"`, `"xla"` or
    `"pallas"`); blocks nest, and the previous choice comes back on exit."""
    if impl not in IMPLS:
        raise ValueError(f"expected impl in {IMPLS}, got {impl!r}")
    previous = default_impl()
    _default.impl = impl
    try:
        yield
    finally:
        _default.impl = previous


def resolving_auto(jitted: Callable) -> Callable:
    """`jitted` (a `jax.jit` function with a static `impl`) called with `"auto"`
    replaced by `default_impl()` first, so the `use_impl` block in force is part
    of jit's cache key and a trace made under another block is never reused."""

    @functools.wraps(jitted)
    def call(*args, impl: str = "auto", **kwargs):
        return jitted(*args, impl=default_impl() if impl == "auto" else impl, **kwargs)

    return call


def backend() -> str:
    """The platform arrays are placed on by default: `"cpu"`, `"gpu"` or `"tpu"`."""
    return jax.default_backend()


def choose(
    impl: str,
    kernel: str,
    unsupported: Callable[[str], str | None],
    *,
    platform: str | None = None,
    fast: str = "pallas",
) -> Choice:
    """The implementation of `kernel` to run for one call.

    **Arguments:**

    - `impl`: `"auto"`, `"xla"` or `fast` (the caller's argument).
    - `kernel`: the kernel's name, for messages.
    - `unsupported(platform) -> str | None`: why the fast path cannot serve this
      call on `platform` (for Pallas, `"cpu"` means interpret mode), or `None`.
    - `platform`: the backend (default: `jax.default_backend()`).
    - `fast`: the fast path's name: `"pallas"` (a Pallas kernel), or a vendor
      library kernel such as `"cudnn"` (dense attention's, through
      `jax.nn.dot_product_attention`), which has no interpret mode: its
      `unsupported("cpu")` always gives a reason. A `use_impl("pallas")` block
      redirects `"auto"` only where `fast` is `"pallas"`; `use_impl("xla")` always.

    **Raises:** `ValueError` for an unknown `impl`, or `impl=fast` on a call the
    fast path does not support (the message names the constraint).
    """
    impls = ("auto", "xla", fast)
    if impl not in impls:
        raise ValueError(f"{kernel}: expected impl in {impls}, got {impl!r}")
    if impl == "auto" and default_impl() in impls:
        impl = default_impl()
    if impl == "xla":
        return Choice("xla")
    platform = backend() if platform is None else platform
    if impl == "auto" and platform not in ACCELERATORS:
        return Choice("xla")
    reason = unsupported(platform)
    if reason is None:
        return Choice(fast, interpret=platform not in ACCELERATORS)
    if impl == fast:
        raise ValueError(f"{kernel}: impl={fast!r} cannot serve this call on {platform}: {reason}")
    return Choice("xla")
