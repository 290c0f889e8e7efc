"""The dispatcher's rule for a call whose fast path is a vendor library kernel.

`_dispatch.choose` picks between XLA and a Pallas kernel, which also runs on CPU
in interpret mode. Some fast paths are library kernels instead (dense attention's
is cuDNN's fused attention, reached through `jax.nn.dot_product_attention`): they
have no interpret mode and run on one backend only. `choose_library` applies the
same rule under the library's name: `impl="auto" | "xla" | <library>`, `"auto"`
takes the library kernel on an accelerator when it supports the call and XLA
otherwise (always XLA on CPU), and naming the library on a call it cannot serve
is a `ValueError` that names the constraint.
"""

from collections.abc import Callable

from ._dispatch import ACCELERATORS, Choice, backend, default_impl


def choose_library(
    impl: str,
    kernel: str,
    library: str,
    unsupported: Callable[[str], str | None],
    *,
    platform: str | None = None,
) -> Choice:
    """The implementation of `kernel` to run for one call: `Choice("xla")` or
    `Choice(library)`.

    **Arguments:**

    - `impl`: `"auto"`, `"xla"` or `library` (the caller's argument).
    - `kernel`: the kernel's name, for messages.
    - `library`: the library path's name, e.g. `"cudnn"`.
    - `unsupported(platform) -> str | None`: why the library kernel cannot serve
      this call on `platform` (on `"cpu"` it always has a reason: no interpret mode).
    - `platform`: the backend (default: `jax.default_backend()`).

    **Raises:** `ValueError` for an unknown `impl`, or `impl=library` on a call the
    library kernel does not serve.
    """
    impls = ("auto", "xla", library)
    if impl not in impls:
        raise ValueError(f"{kernel}: expected impl in {impls}, got {impl!r}")
    if impl == "xla" or (impl == "auto" and default_impl() == "xla"):  # `use_impl("xla")` blocks too
        return Choice("xla")
    platform = backend() if platform is None else platform
    if impl == "auto" and platform not in ACCELERATORS:
        return Choice("xla")
    reason = unsupported(platform)
    if reason is None:
        return Choice(library)
    if impl == library:
        raise ValueError(f"{kernel}: impl={library!r} cannot serve this call on {platform}: {reason}")
    return Choice("xla")
