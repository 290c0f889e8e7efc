"""Training speed and memory of every mixer relative to the vanilla Transformer,
by the protocols of two published tables, measured on this machine.

`lra` — Long Range Arena, Table 2 (Tay et al., "Long Range Arena: A Benchmark
for Efficient Transformers", ICLR 2021): training steps per second and peak
memory on the byte-level text task at L ∈ {1K, 2K, 3K, 4K}, batch 32, every
model the same size. The size is the paper's stated text setting (Appendix
A.1.2): 6 layers, width 512, 8 heads, feed-forward 2048. (The released LRA
config, `text_classification/configs/base_tc_config.py`, is smaller: 4 layers,
width 256, 4 heads, MLP 1024.) Every mixer kind seqkit has is measured, each
attention kind with 8 heads and its other options at their defaults.

`s4` — S4, Table 3 (Gu, Goel and Ré, "Efficiently Modeling Long Sequences with
Structured State Spaces", ICLR 2022, Appendix D.1): the Transformer, Performer,
Linear Transformer and S4 at L ∈ {1024, 4096}, "following [LRA]": 4 layers,
width 256, 4 heads, batch 32, about 600k parameters (attention blocks without
a feed-forward layer), S4 "parameter tied" at state size N = 256. seqkit's
attention projects q/k/v at the model width (the paper: 128) and its S4 is
bidirectional, so both have more parameters than the paper's (1.12M and 1.91M
here); the `params` column shows the match.

Each model is `SequenceModel(vocab_size=257, pool="mean", n_classes=2)` with
pre-norm LayerNorm blocks, trained by the trainer's own step
(`seqkit.train.make_train_step` with `make_optimizer`, the LRA text learning
rate and schedule) on random byte tokens and labels. Vanilla is
`MultiHeadAttention(impl="dense")`, the `L × L` reference; `mha` is seqkit's
default chunked (online-softmax) path. A timing is `--steps` consecutive steps
feeding each step's model and optimizer state to the next, after compilation
and one warm-up step; the minimum over `--repeats` round-robin samples (every
model sees the same machine state) gives steps/s. Memory is the compiled
step's temporaries from XLA's `memory_analysis()` (the peak scratch besides
arguments and outputs; the paper's "peak memory usage" is a device's whole
allocation, so compare ratios, not GB). A program whose temporaries exceed
`--max-temp-gb` is compiled (memory reported) but not run. The paper's ratios
are printed beside ours where the paper has the model.

    python benchmarks/lra_efficiency.py                    # both protocols, full size
    python benchmarks/lra_efficiency.py --quick            # width 16, 1 layer, L in 256, 512
    python benchmarks/lra_efficiency.py --protocol s4 --lengths 1024 4096 16384
    python benchmarks/lra_efficiency.py --protocol lra --only s4 performer linear --json rows.json
    python benchmarks/lra_efficiency.py --rows rows.json --plot lra.png
    python benchmarks/lra_efficiency.py --protocol lra --batch 4 --n-layers 2    # scaled down

The full sizes are the papers' (both ran on accelerators); on a CPU the `lra`
protocol takes hours. `--d-model`, `--n-layers`, `--heads` and `--batch` replace
a protocol's size (e.g. the released LRA config: `--n-layers 4 --d-model 256
--heads 4`); the printed title says what ran.

With matplotlib (`pip install ".[bench]"`) it draws steps/s, speed-up and memory
against L: the `lra` protocol at `--plot`, the `s4` protocol beside it with
`_s4` added to the file name.
"""

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import equinox as eqx  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import jax.random as jr  # noqa: E402
import numpy as np  # noqa: E402

import seqkit.attention  # noqa: E402, F401  (registers the attention mixer kinds)
from _plot import default_path, load_rows, plot_panels, save_rows, series  # noqa: E402
from seqkit._cli_common import positive_int  # noqa: E402
from seqkit.nn import MixerConfig, SequenceModel  # noqa: E402
from seqkit.train import make_optimizer, make_train_step  # noqa: E402

VOCAB = 257  # the byte-level text task: 256 bytes and padding

# Tay et al. 2021, Table 2: steps per second and peak memory (GB per TPU v3 device)
# at L = 1K, 2K, 3K, 4K. Sparse Transformer and Longformer were not timed (masked
# emulations, Appendix B.2).
LRA_TABLE2 = {
    "vanilla": ((8.1, 4.9, 2.3, 1.4), (0.85, 2.65, 5.51, 9.48)),
    "local": ((9.2, 8.4, 7.4, 7.4), (0.42, 0.76, 1.06, 1.37)),
    "linformer": ((9.3, 9.1, 8.5, 7.7), (0.37, 0.55, 0.99, 0.99)),
    "reformer": ((4.4, 2.2, 1.5, 1.1), (0.48, 0.99, 1.53, 2.28)),
    "sinkhorn": ((9.1, 7.9, 6.6, 5.3), (0.47, 0.83, 1.13, 1.48)),
    "synthesizer": ((8.7, 5.7, 6.6, 1.9), (0.65, 1.98, 4.09, 6.99)),
    "bigbird": ((7.4, 3.9, 2.7, 1.5), (0.77, 1.49, 2.18, 2.88)),
    "linear": ((9.1, 9.3, 8.6, 7.8), (0.37, 0.57, 0.80, 1.03)),
    "performer": ((9.5, 9.4, 8.7, 8.0), (0.37, 0.59, 0.82, 1.06)),
}
LRA_LENGTHS = (1024, 2048, 3072, 4096)

# Gu et al. 2022, Table 3: (speed-up, memory) relative to the Transformer.
S4_TABLE3 = {
    1024: {"vanilla": (1.0, 1.0), "performer": (1.23, 0.43), "linear": (1.58, 0.37), "s4": (1.58, 0.43)},
    4096: {"vanilla": (1.0, 1.0), "performer": (3.79, 0.086), "linear": (5.35, 0.067), "s4": (5.19, 0.091)},
}


@dataclasses.dataclass(frozen=True)
class Protocol:
    """One published table's setting: the model size, the batch, the lengths and
    the models (name -> (mixer kind, options))."""

    name: str
    title: str
    d_model: int
    n_layers: int
    heads: int
    ffn_mult: int
    batch: int
    lengths: tuple[int, ...]
    models: dict


def protocols(quick: bool) -> dict[str, Protocol]:
    """The two settings by name; `quick`: the same models at toy sizes (every kind
    compiles, trains and is measured)."""
    lra = dict(d_model=512, n_layers=6, heads=8, batch=32, lengths=LRA_LENGTHS)
    s4 = dict(d_model=256, n_layers=4, heads=4, batch=32, lengths=(1024, 4096))
    if quick:
        lra = s4 = dict(d_model=16, n_layers=1, heads=2, batch=2, lengths=(256, 512))
    return {
        "lra": Protocol(
            name="lra",
            title="LRA Table 2 protocol (Tay et al. 2021): byte-level text, FFN 4x",
            ffn_mult=4,
            # vanilla, then every registered mixer kind at its defaults
            models={"vanilla": ("mha", dict(impl="dense"))} | {k: (k, {}) for k in MixerConfig.kinds()},
            **lra,
        ),
        "s4": Protocol(
            name="s4",
            title="S4 Table 3 protocol (Gu et al. 2022): byte-level text, no FFN, S4 N=256",
            ffn_mult=0,
            models={
                "vanilla": ("mha", dict(impl="dense")),
                "performer": ("performer", {}),
                "linear": ("linear", {}),
                "s4": ("s4", dict(state_size=256)),
            },
            **s4,
        ),
    }


def build(p: Protocol, kind: str, options: dict, L: int, key):
    """The model, its state, its optimizer's state and the optimizer. Every
    attention kind gets the protocol's number of heads."""
    if "num_heads" in MixerConfig.from_kind(kind).options():
        options = dict(num_heads=p.heads) | options
    config = MixerConfig.from_kind(kind, **options)
    model, state = eqx.nn.make_with_state(SequenceModel)(
        d_model=p.d_model,
        n_classes=2,
        n_layers=p.n_layers,
        mixer=lambda i, k: config.build(p.d_model, max_length=L, key=k),
        vocab_size=VOCAB,
        norm="layer",
        prenorm=True,
        ffn_mult=p.ffn_mult,
        pool="mean",
        key=key,
    )
    # The LRA text task's optimizer settings (base_tc_config.py); speed does not depend on them.
    optimizer = make_optimizer(learning_rate=0.05, weight_decay=0.1, warmup_steps=8000, total_steps=20000)
    opt_state = optimizer.init(eqx.filter(model, eqx.is_inexact_array))
    return model, state, opt_state, optimizer


def random_batch(batch: int, L: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "inputs": jnp.asarray(rng.integers(0, 256, (batch, L)), jnp.int32),
        "label": jnp.asarray(rng.integers(0, 2, (batch,)), jnp.int32),
    }


def _paper(p: Protocol, name: str, L: int) -> tuple[float | None, float | None]:
    """The paper's (speed-up, memory ratio) for this model and length, if it has them."""
    if p.name == "lra" and name in LRA_TABLE2 and L in LRA_LENGTHS:
        i = LRA_LENGTHS.index(L)
        (sps, mem), (ref_sps, ref_mem) = LRA_TABLE2[name], LRA_TABLE2["vanilla"]
        return sps[i] / ref_sps[i], mem[i] / ref_mem[i]
    if p.name == "s4" and name in S4_TABLE3.get(L, {}):
        return S4_TABLE3[L][name]
    return None, None


def measure(
    p: Protocol, lengths, only, repeats, steps, max_temp_gb, log, done=None
) -> tuple[list[dict], list[str]]:
    """Rows of every model at every length, and the failures; `done(rows)` is called
    after each length (to save what was measured so far)."""
    rows, errors = [], []
    names = [n for n in p.models if n == "vanilla" or not only or n in only]
    for L in lengths:
        batch = random_batch(p.batch, L)
        key = jr.key(0)
        runs = {}
        for name in names:
            kind, options = p.models[name]
            t0 = time.perf_counter()
            try:
                model, state, opt_state, optimizer = build(p, kind, options, L, key)
                # A fresh step per model: its compiled program is kept below, not cached.
                step = make_train_step(optimizer)
                compiled = step.lower(model, state, opt_state, batch, key).compile()
            except Exception as e:  # one model that cannot be built or compiled does not stop the run
                first = (str(e).strip().splitlines() or [type(e).__name__])[0]
                errors.append(f"{p.name} L={L} {name}: {type(e).__name__}: {first}")
                log(f"  {p.name} L={L} {name}: failed: {first}")
                continue
            mem = compiled.compiled.memory_analysis()
            temp = mem.temp_size_in_bytes if mem is not None else None
            runnable = temp is None or temp <= max_temp_gb * 2**30
            carry = (model, state, opt_state)
            if runnable:
                try:  # a run-time failure (out of memory) of one model does not stop the run
                    carry = jax.block_until_ready(compiled(*carry, batch, key))[:3]  # warm up
                except Exception as e:
                    first = (str(e).strip().splitlines() or [type(e).__name__])[0]
                    errors.append(f"{p.name} L={L} {name}: {type(e).__name__}: {first}")
                    log(f"  {p.name} L={L} {name}: failed: {first}")
                    continue
            params = sum(x.size for x in jax.tree.leaves(eqx.filter(model, eqx.is_inexact_array)))
            runs[name] = dict(compiled=compiled, carry=carry, mem=mem, runnable=runnable, params=params)
            log(f"  {p.name} L={L} {name}: compiled and warmed up in {time.perf_counter() - t0:.1f}s")
        best = {name: float("inf") for name in runs}
        for _ in range(repeats):  # round-robin: every model sees the same machine state
            for name, r in runs.items():
                if not r["runnable"]:
                    continue
                carry = r["carry"]
                t0 = time.perf_counter()
                for _ in range(steps):
                    carry = r["compiled"](*carry, batch, key)[:3]
                jax.block_until_ready(carry)
                best[name] = min(best[name], (time.perf_counter() - t0) / steps)
                r["carry"] = carry
        ref = runs.get("vanilla")
        ref_t = best.get("vanilla", float("inf"))
        ref_m = ref["mem"].temp_size_in_bytes if ref is not None and ref["mem"] is not None else None
        for name, r in runs.items():
            mem, ran = r["mem"], r["runnable"] and best[name] < float("inf")
            paper_speedup, paper_mem = _paper(p, name, L)
            rows.append(
                dict(
                    protocol=p.name,
                    L=L,
                    model=name,
                    params=int(r["params"]),
                    ms=1e3 * best[name] if ran else None,
                    steps_per_s=1 / best[name] if ran else None,
                    speedup=ref_t / best[name] if ran and ref_t < float("inf") else None,
                    paper_speedup=paper_speedup,
                    temp_mb=mem.temp_size_in_bytes / 2**20 if mem is not None else None,
                    total_mb=(
                        (mem.temp_size_in_bytes + mem.argument_size_in_bytes + mem.output_size_in_bytes)
                        / 2**20
                        if mem is not None
                        else None
                    ),
                    mem_x_vanilla=mem.temp_size_in_bytes / ref_m if mem is not None and ref_m else None,
                    paper_mem=paper_mem,
                )
            )
        del runs  # free this length's programs and states before the next
        if done is not None:
            done(rows)
    return rows, errors


def _cell(value, width: int, fmt: str, missing: str = "-") -> str:
    return f"{value:>{width}{fmt}}" if value is not None else f"{missing:>{width}}"


def print_table(title: str, rows: list[dict]) -> None:
    print(title)
    print(
        f"{'L':>6} {'model':<14} {'params':>9} {'ms/step':>9} {'steps/s':>8} {'x vanilla':>9} "
        f"{'(paper)':>7} {'temp MiB':>9} {'total MiB':>9} {'mem x van':>9} {'(paper)':>7}"
    )
    for r in rows:
        ran = r["ms"] is not None
        print(
            f"{r['L']:>6} {r['model']:<14} {r['params']:>9} "
            f"{_cell(r['ms'], 9, '.1f', '(skip)')} {_cell(r['steps_per_s'], 8, '.2f')} "
            f"{_cell(r['speedup'], 9, '.2f')} {_cell(r['paper_speedup'], 7, '.2f')} "
            f"{_cell(r['temp_mb'], 9, '.1f')} {_cell(r['total_mb'], 9, '.1f')} "
            f"{_cell(r['mem_x_vanilla'], 9, '.3f')} {_cell(r['paper_mem'], 7, '.3f')}"
            + ("" if ran else "  (temporaries over --max-temp-gb: compiled, not run)")
        )


def plot(path: str, title: str, rows: list[dict]) -> None:
    plot_panels(
        path,
        title,
        "sequence length L",
        [
            dict(ylabel="training steps / s", series=series(rows, "model", "L", "steps_per_s")),
            dict(ylabel="speed-up over vanilla", series=series(rows, "model", "L", "speedup"), hline=1.0),
            dict(
                ylabel="memory (temporaries) / vanilla",
                series=series(rows, "model", "L", "mem_x_vanilla"),
                hline=1.0,
            ),
        ],
    )


def s4_path(path: str) -> str:
    p = Path(path)
    return str(p.with_name(f"{p.stem}_s4{p.suffix or '.png'}"))


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--protocol", choices=["lra", "s4", "both"], default="both")
    parser.add_argument("--lengths", type=positive_int, nargs="+", help="override the protocols' lengths")
    parser.add_argument("--only", nargs="+", metavar="KIND", help="models to run (vanilla always runs)")
    parser.add_argument(
        "--repeats", type=positive_int, help="round-robin timing samples, min taken (default 3; --quick 1)"
    )
    parser.add_argument("--steps", type=positive_int, help="consecutive train steps per sample (default 1)")
    parser.add_argument("--d-model", type=positive_int, help="override the protocols' width (to scale down)")
    parser.add_argument("--n-layers", type=positive_int, help="override the protocols' depth")
    parser.add_argument("--heads", type=positive_int, help="override the protocols' attention heads")
    parser.add_argument(
        "--batch", type=positive_int, help="override the protocols' batch (32 in both papers)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="width 16, 1 layer, batch 2, L in 256, 512, 1 repeat"
    )
    parser.add_argument("--max-temp-gb", type=float, default=8.0)
    parser.add_argument("--json", help="also write the rows to this file")
    parser.add_argument("--verbose", action="store_true", help="log compile progress on stderr")
    parser.add_argument("--plot", default=default_path(__file__), help="figure path (PNG); s4: *_s4.png")
    parser.add_argument("--rows", help="redraw from rows saved by --json instead of measuring")
    args = parser.parse_args()
    if args.repeats is None:
        args.repeats = 1 if args.quick else 3
    if args.steps is None:
        args.steps = 1
    chosen = ["lra", "s4"] if args.protocol == "both" else [args.protocol]
    scale = dict(d_model=args.d_model, n_layers=args.n_layers, heads=args.heads, batch=args.batch)
    scale = {k: v for k, v in scale.items() if v is not None}
    table = {name: dataclasses.replace(p, **scale) for name, p in protocols(args.quick).items()}
    if args.only:
        known = {n for name in chosen for n in table[name].models}
        unknown = [n for n in args.only if n not in known]
        if unknown:
            parser.error(f"unknown model {unknown[0]!r}; expected some of: {', '.join(sorted(known))}")
        # a protocol none of whose models was asked for is left out (vanilla alone says nothing)
        chosen = [name for name in chosen if any(n in args.only for n in table[name].models)]
    json_dir = os.path.dirname(os.path.abspath(args.json)) if args.json else None
    if json_dir and not os.path.isdir(json_dir):  # said now, not after an hour of measuring
        parser.error(f"--json {args.json}: no directory {json_dir}")
    log = (lambda m: print(m, file=sys.stderr, flush=True)) if args.verbose else (lambda m: None)
    errors = []
    if args.rows:
        titles, rows = load_rows(args.rows)
    else:
        titles, rows = {}, []
        where = f"{jax.devices()[0].platform}, {os.cpu_count()} cores"
        for name in chosen:
            p = table[name]
            titles[name] = (
                f"{p.title}; {p.n_layers} layers, width {p.d_model}, {p.heads} heads, batch {p.batch}; "
                f"{where}; train step, min of {args.repeats} x {args.steps} steps"
            )

            before = tuple(rows)  # the earlier protocols' rows

            def done(got, before=before):  # after each length: a stopped run keeps its rows
                if args.json:
                    save_rows(args.json, titles, [*before, *got])

            got, errs = measure(
                p, args.lengths or p.lengths, args.only, args.repeats, args.steps, args.max_temp_gb, log, done
            )
            rows += got
            errors += errs
    for name, title in titles.items():
        print_table(
            f"{title}\nspeed-up = vanilla time / time; memory = compiled temporaries / vanilla's; "
            "(paper) = the published ratio",
            [r for r in rows if r["protocol"] == name],
        )
        print()
    if args.json:
        save_rows(args.json, titles, rows)
    for name, title in titles.items():
        path = args.plot if name == "lra" else s4_path(args.plot)
        plot(path, title, [r for r in rows if r["protocol"] == name])
    if errors:
        print(f"{len(errors)} model(s) failed:", file=sys.stderr)
        for e in errors:
            print(f"  {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
