"""Compiled peak memory of Mega-chunk against full Mega, as the length grows.

For each length, one Mega block (one example: the Mega mixer in a pre-norm
`ResidualBlock` with a SiLU feed-forward network of width 2·d_model) is compiled
for the forward pass and for forward + backward (gradient of the summed output
with respect to the parameters and the input), and XLA's memory analysis of the
compiled program is reported: `peak = arguments + outputs + temporaries −
aliased`. Nothing is run, so full attention at L = 16384 costs compile time only.

    python benchmarks/mega_memory.py [--lengths 1024 4096 16384] [--chunk 128]

Chunked memory should grow linearly in L (×4 per row here); full attention
quadratically (×16). With matplotlib (`pip install ".[bench]"`) it also draws
the memory against L (`--plot`).
"""

import argparse

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr

from _plot import default_path, plot_panels
from seqkit.nn import Mega, ResidualBlock


def peak_bytes(f, *args) -> int:
    m = jax.jit(f).lower(*args).compile().memory_analysis()
    return m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes - m.alias_size_in_bytes


def mega_block(d_model: int, **mixer_options) -> ResidualBlock:
    mixer = Mega(d_model, **mixer_options, key=jr.key(0))
    return ResidualBlock(mixer, d_model, ffn_mult=2, ffn_activation="silu", key=jr.key(1))


def measure(block: ResidualBlock, L: int) -> tuple[int, int]:
    params, static = eqx.partition(block, eqx.is_inexact_array)
    x = jnp.zeros((L, block.mixer.d_model), jnp.float32)
    state = eqx.nn.State(block)  # LayerNorm: no running statistics

    def forward(params, x):
        return eqx.combine(params, static)(x, state)[0]

    def loss(params, x):
        return jnp.sum(forward(params, x))

    return peak_bytes(forward, params, x), peak_bytes(jax.grad(loss, argnums=(0, 1)), params, x)


def mib(n: int) -> str:
    return f"{n / 2**20:10.1f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[1024, 4096, 16384])
    parser.add_argument("--chunk", type=int, default=128)
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--z-dim", type=int, default=64)
    parser.add_argument("--v-dim", type=int, default=256)
    parser.add_argument("--plot", default=default_path(__file__), help="figure path (PNG)")
    args = parser.parse_args()

    kw = {"z_dim": args.z_dim, "v_dim": args.v_dim, "relative_position": "rotary"}
    full = mega_block(args.d_model, **kw)
    chunked = mega_block(args.d_model, chunk_size=args.chunk, **kw)
    print(
        f"backend: {jax.default_backend()}; d_model={args.d_model}, z={args.z_dim}, "
        f"v={args.v_dim}, chunk={args.chunk}; compiled peak memory in MiB"
    )
    header = (
        f"{'L':>6} | {'chunk fwd':>10} {'full fwd':>10} {'ratio':>6} "
        f"| {'chunk f+b':>10} {'full f+b':>10} {'ratio':>6}"
    )
    print(header)
    print("-" * len(header))
    points = {"Mega-chunk forward": [], "Mega forward": [], "Mega-chunk fwd+bwd": [], "Mega fwd+bwd": []}
    for L in args.lengths:
        cf, cb = measure(chunked, L)
        ff, fb = measure(full, L)
        print(f"{L:>6} | {mib(cf)} {mib(ff)} {ff / cf:6.1f} | {mib(cb)} {mib(fb)} {fb / cb:6.1f}")
        for name, b in zip(points, (cf, ff, cb, fb), strict=True):
            points[name].append((L, b / 2**20))
    plot_panels(
        args.plot,
        f"Mega block, compiled peak memory (d_model {args.d_model}, z {args.z_dim}, v {args.v_dim}, "
        f"chunk {args.chunk})",
        "sequence length L",
        [dict(ylabel="peak memory (MiB)", series=points)],
    )


if __name__ == "__main__":
    main()
