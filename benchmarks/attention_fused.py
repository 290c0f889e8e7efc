"""seqkit's softmax attention paths against a fused CPU attention kernel.

The attention core alone (q, k, v given; batch 8, 2 heads of 64, i.e. width
128), forward and forward+backward, side by side in one process: the plain XLA path
(`jax.nn.dot_product_attention`), seqkit's dense reference
(`dot_product_attention`), seqkit's chunked online-softmax path
(`chunked_dot_product_attention`, the default of `MultiHeadAttention`), and, when
PyTorch is installed, `torch.nn.functional.scaled_dot_product_attention` (a fused
kernel). PyTorch is optional and only used here, never by seqkit itself.

    python benchmarks/attention_fused.py --lengths 1024 4096 --causal

With matplotlib (`pip install ".[bench]"`) it also draws the times and the
ratios to the fused kernel against L (`--plot`; the dashed line is 1.5).
"""

import argparse
import os
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from _plot import default_path, load_rows, plot_panels, save_rows, series  # noqa: E402
from seqkit._cli_common import positive_int  # noqa: E402
from seqkit.attention import chunked_dot_product_attention, dot_product_attention  # noqa: E402


def _round_robin(calls, repeats):
    """The fastest of `repeats` timed calls of each function in `calls` (a dict),
    after one untimed (compiling) call each. The calls take turns, so a slow drift of
    the machine's speed reaches every path alike."""
    for fn in calls.values():
        fn()  # warm up / compile
    best = dict.fromkeys(calls, float("inf"))
    for _ in range(repeats):
        for name, fn in calls.items():
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    return best


def jax_case(attend, q, k, v):
    """(forward call, forward+backward call, forward+backward temp bytes)."""

    def loss(q, k, v):
        return jnp.sum(attend(q, k, v) ** 2)

    fwd = jax.jit(attend)
    both = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))
    mem = both.lower(q, k, v).compile().memory_analysis().temp_size_in_bytes
    return (lambda: jax.block_until_ready(fwd(q, k, v))), (lambda: jax.block_until_ready(both(q, k, v))), mem


def run_length(L, args, torch):
    """Rows `(path, forward s, forward+backward s, temp bytes)` for one length."""
    B, h, dh = args.batch, args.heads, args.head_dim
    rng = np.random.default_rng(0)
    qn, kn, vn = (rng.standard_normal((B, h, L, dh)).astype(np.float32) for _ in range(3))
    q, k, v = (jnp.asarray(x) for x in (qn, kn, vn))
    mask = jnp.tril(jnp.ones((L, L), bool)) if args.causal else None

    def plain_xla(q, k, v):
        t = (0, 2, 1, 3)  # jax.nn wants (B, L, h, d)
        out = jax.nn.dot_product_attention(
            q.transpose(t), k.transpose(t), v.transpose(t), is_causal=args.causal
        )
        return out.transpose(t)

    def chunked(q, k, v):
        return chunked_dot_product_attention(q, k, v, causal=args.causal, chunk_size=args.chunk_size)

    cases = {
        "jax.nn.dot_product_attention": plain_xla,
        "seqkit dense": lambda q, k, v: dot_product_attention(q, k, v, mask),
        f"seqkit chunked ({args.chunk_size})": jax.vmap(jax.vmap(chunked)),
    }
    calls, mems = {}, {}
    for name, attend in cases.items():
        calls[name, "fwd"], calls[name, "both"], mems[name] = jax_case(attend, q, k, v)
    if torch is not None:
        import torch.nn.functional as F

        tq, tk, tv = (torch.tensor(x, requires_grad=True) for x in (qn, kn, vn))

        def torch_fwd():
            with torch.no_grad():
                F.scaled_dot_product_attention(tq, tk, tv, is_causal=args.causal)

        def torch_both():
            for t in (tq, tk, tv):
                t.grad = None
            out = F.scaled_dot_product_attention(tq, tk, tv, is_causal=args.causal)
            (out**2).sum().backward()

        calls["torch sdpa (fused)", "fwd"], calls["torch sdpa (fused)", "both"] = torch_fwd, torch_both
        mems["torch sdpa (fused)"] = None
    best = _round_robin(calls, args.repeats)
    return [(name, best[name, "fwd"], best[name, "both"], mem) for name, mem in mems.items()]


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lengths", type=int, nargs="+", default=[1024, 2048, 4096])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--heads", type=int, default=2)
    parser.add_argument("--head-dim", type=int, default=64)
    parser.add_argument("--chunk-size", type=int, default=512)
    parser.add_argument("--causal", action="store_true")
    parser.add_argument("--repeats", type=positive_int, default=3)
    parser.add_argument("--json", help="also write the rows to this file")
    parser.add_argument("--plot", default=default_path(__file__), help="figure path (PNG)")
    parser.add_argument("--rows", help="redraw the figure from rows saved by --json (no measuring)")
    args = parser.parse_args()
    if args.rows:
        title, table = load_rows(args.rows)
        plot(table, title, args.plot)
        return
    try:
        import torch

        torch.set_num_threads(os.cpu_count() or 1)
    except ImportError:
        torch = None
    version = torch.__version__ if torch else "not installed"
    title = (
        f"attention core, forward and forward+backward, batch {args.batch}, {args.heads} heads of "
        f"{args.head_dim}, causal={args.causal}; {os.cpu_count()} cores; min of {args.repeats}; "
        f"torch: {version}"
    )
    print(title)
    print(
        f"{'L':>6} {'path':<28} {'fwd ms':>9} {'x fused':>8} {'fwd+bwd ms':>11} {'x fused':>8} "
        f"{'temp MiB':>9}"
    )
    table = []
    for L in args.lengths:
        rows = run_length(L, args, torch)
        fused = rows[-1][1:3] if torch is not None else None
        for name, t_fwd, t_both, mem in rows:
            x_fwd, x_both = (t_fwd / fused[0], t_both / fused[1]) if fused else (None, None)
            table.append(
                dict(
                    L=L,
                    path=name,
                    fwd_ms=1e3 * t_fwd,
                    fwd_bwd_ms=1e3 * t_both,
                    fwd_x_fused=x_fwd,
                    fwd_bwd_x_fused=x_both,
                    temp_mb=None if mem is None else mem / 2**20,
                )
            )
            r_fwd, r_both = (f"{x:>8.2f}" if fused else f"{'-':>8}" for x in (x_fwd, x_both))
            mib = f"{mem / 2**20:>9.1f}" if mem is not None else f"{'-':>9}"
            print(f"{L:>6} {name:<28} {1e3 * t_fwd:>9.1f} {r_fwd} {1e3 * t_both:>11.1f} {r_both} {mib}")
    if args.json:
        save_rows(args.json, title, table)
    plot(table, title, args.plot)


def plot(table, title, path):
    panels = [dict(ylabel="forward+backward (ms)", series=series(table, "path", "L", "fwd_bwd_ms"))]
    if any(r["fwd_x_fused"] is not None for r in table):
        seqkit_rows = [r for r in table if r["path"] != "torch sdpa (fused)"]
        for key, what in (("fwd_x_fused", "forward"), ("fwd_bwd_x_fused", "forward+backward")):
            panels.append(
                dict(ylabel=f"{what}: time / fused", series=series(seqkit_rows, "path", "L", key), hline=1.5)
            )
    plot_panels(path, title, "sequence length L", panels)


if __name__ == "__main__":
    main()
