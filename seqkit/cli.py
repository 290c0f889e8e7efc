"""The `seqkit` command."""

import argparse
import sys
import time


def _demo(args: argparse.Namespace) -> int:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from seqkit import ssm

    key = jax.random.key(args.seed)
    L, H = args.length, args.width
    t = np.linspace(0, 8 * np.pi, L)
    # A generated multichannel signal: chirps with different rates per channel.
    u = jnp.asarray(np.sin(np.outer(t, 1 + np.arange(H) / H) * t[:, None] / 8), jnp.float32)
    cores = {
        "S4": ssm.S4(H, l_max=L, key=key),
        "S4D": ssm.S4D(H, key=key),
        "DSS": ssm.DSS(H, key=key),
        "EMA": ssm.EMA(H, key=key),
    }
    print(f"seqkit demo: SSM cores on a generated {L}x{H} signal (conv mode vs step mode)")
    print(f"{'core':<5} {'conv ms':>9} {'step ms':>9} {'max |conv - step|':>18}")
    for name, core in cores.items():
        conv = jax.jit(core.__call__)
        y = conv(u).block_until_ready()
        t0 = time.perf_counter()
        y = conv(u).block_until_ready()
        t_conv = time.perf_counter() - t0

        @jax.jit
        def run_steps(u, core=core):
            def body(state, u_t):
                y_t, state = core.step(u_t, state)
                return state, y_t

            return jax.lax.scan(body, core.init_state(L), u)[1]

        ys = run_steps(u).block_until_ready()
        t0 = time.perf_counter()
        ys = run_steps(u).block_until_ready()
        t_step = time.perf_counter() - t0
        err = float(jnp.max(jnp.abs(y - ys)))
        print(f"{name:<5} {1e3 * t_conv:>9.2f} {1e3 * t_step:>9.2f} {err:>18.2e}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="seqkit", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run every SSM core in conv and step mode on a generated signal")
    demo.add_argument("--length", type=int, default=1024)
    demo.add_argument("--width", type=int, default=32)
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=_demo)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
