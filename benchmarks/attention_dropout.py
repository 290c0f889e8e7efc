"""What attention-weight dropout costs: forward+backward time of softmax attention
without dropout, with seqkit's dropout (a counter-based hash of the seed and the
(row, query, key) position, `seqkit.kernels._dropout`), and with the mask drawn
from `jax.random.bernoulli` (threefry, JAX's default generator) over the same
weights, written out here as the baseline.

Inputs are `(batch, heads, L, head_dim)`; `value_and_grad` of a mean-square loss
over q, k and v is jitted for each variant. `dense` is the `L × L` softmax
(`seqkit.attention.dot_product_attention`), `chunked` the online softmax over key
chunks (`chunked_dot_product_attention`, `vmap`ped over batch and heads, one key
per head). `x none` is the variant's time over the same path's time without
dropout. Times are the minimum over `--repeats` round-robin runs in one process.

    python benchmarks/attention_dropout.py                 # L = 1024, 2048, 4096
    python benchmarks/attention_dropout.py --lengths 1024 --rate 0.2
"""

import argparse
import os
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import jax.random as jr  # noqa: E402

import seqkit.attention as sa  # noqa: E402
from _plot import default_path, plot_panels, series  # noqa: E402
from seqkit._cli_common import positive_int  # noqa: E402


def threefry_dense(q, k, v, rate, key):
    """The `L × L` softmax with its weights dropped by a `jax.random.bernoulli` mask."""
    s = jnp.einsum("...qd,...kd->...qk", q, k) / jnp.sqrt(q.shape[-1]).astype(q.dtype)
    p = jax.nn.softmax(s, axis=-1)
    keep = jr.bernoulli(key, 1.0 - rate, p.shape)
    p = jnp.where(keep, p / (1.0 - rate), jnp.zeros_like(p))
    return jnp.einsum("...qk,...kd->...qd", p, v)


def variants(rate, chunk):
    """Name -> (path, attention of (q, k, v, key) over `(B, h, L, d)`)."""

    def chunked(rate):
        def f(q, k, v, key):
            keys = jr.split(key, q.shape[:2])
            one = lambda q, k, v, kk: sa.chunked_dot_product_attention(  # noqa: E731
                q, k, v, chunk_size=chunk, dropout_rate=rate, key=kk
            )
            return jax.vmap(jax.vmap(one))(q, k, v, keys)

        return f

    return {
        "dense": ("dense", lambda q, k, v, key: sa.dot_product_attention(q, k, v)),
        "dense+hash": (
            "dense",
            lambda q, k, v, key: sa.dot_product_attention(q, k, v, dropout_rate=rate, key=key),
        ),
        "dense+threefry": ("dense", lambda q, k, v, key: threefry_dense(q, k, v, rate, key)),
        "chunked": ("chunked", chunked(0.0)),
        "chunked+hash": ("chunked", chunked(rate)),
    }


def measure(lengths, batch, heads, head_dim, rate, chunk, repeats, log):
    rows = []
    for L in lengths:
        kq, kk, kv, kd = jr.split(jr.key(0), 4)
        q, k, v = (jr.normal(x, (batch, heads, L, head_dim)) for x in (kq, kk, kv))
        fns = {}
        for name, (path, attend) in variants(rate, chunk).items():
            loss = lambda q, k, v, attend=attend, kd=kd: jnp.mean(attend(q, k, v, kd) ** 2)  # noqa: E731
            f = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))
            t0 = time.perf_counter()
            jax.block_until_ready(f(q, k, v))  # compile and warm up
            fns[name] = (path, f)
            log(f"  L={L} {name}: compiled+warm in {time.perf_counter() - t0:.1f}s")
        best = {name: float("inf") for name in fns}
        for _ in range(repeats):  # round-robin: every variant sees the same machine state
            for name, (_, f) in fns.items():
                t0 = time.perf_counter()
                jax.block_until_ready(f(q, k, v))
                best[name] = min(best[name], time.perf_counter() - t0)
        for name, (path, _) in fns.items():
            rows.append(dict(L=L, variant=name, ms=1e3 * best[name], x_none=best[name] / best[path]))
    return rows


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lengths", type=int, nargs="+", default=[1024, 2048, 4096])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--head-dim", type=int, default=32)
    parser.add_argument("--rate", type=float, default=0.1, help="dropout rate")
    parser.add_argument("--chunk", type=int, default=512, help="chunk size of the chunked path")
    parser.add_argument("--repeats", type=positive_int, default=3)
    parser.add_argument("--verbose", action="store_true", help="log compile progress")
    parser.add_argument("--plot", default=default_path(__file__), help="figure path (PNG)")
    args = parser.parse_args()
    log = print if args.verbose else (lambda *_: None)
    rows = measure(
        args.lengths, args.batch, args.heads, args.head_dim, args.rate, args.chunk, args.repeats, log
    )
    title = (
        f"attention dropout, rate {args.rate}: batch {args.batch}, {args.heads} heads of {args.head_dim}, "
        f"forward+backward, {jax.default_backend()} ({jax.devices()[0].device_kind})"
    )
    print(title)
    print(f"{'L':>6} {'variant':<16} {'ms':>10} {'x none':>7}")
    for r in rows:
        print(f"{r['L']:>6} {r['variant']:<16} {r['ms']:>10.1f} {r['x_none']:>7.2f}")
    plot_panels(
        args.plot,
        title,
        "sequence length L",
        [
            dict(ylabel="forward+backward time (ms)", series=series(rows, "variant", "L", "ms")),
            dict(
                ylabel="time over the same path without dropout",
                series=series(rows, "variant", "L", "x_none"),
                hline=1.0,
            ),
        ],
    )


if __name__ == "__main__":
    main()
