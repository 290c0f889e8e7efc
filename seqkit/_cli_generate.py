"""`seqkit generate RUN_DIR --prompt TEXT`: sample from a trained byte-level language model."""

import argparse
import sys

from seqkit._cli_common import positive_int


def generate_command(args: argparse.Namespace) -> int:
    """Run `seqkit generate ...` from parsed arguments; returns the exit code."""
    import jax.numpy as jnp
    import jax.random as jr
    import numpy as np

    from seqkit._cli_common import _one_line, _Usage, _user_errors
    from seqkit.nn import generate
    from seqkit.train import load_run

    try:
        recipe, model, state, _, meta = load_run(args.run_dir)
        wrong = [
            f"{key}={value} (expected {want})"
            for key, value, want in (
                ("model.pool", recipe.model.pool, "none"),
                ("data.vocab_size", recipe.data.vocab_size, 256),
            )
            if value != want
        ]
        if wrong:
            raise ValueError(
                f"{args.run_dir} holds {recipe.name}, not a byte-level language model: {', '.join(wrong)}"
            )
        prompt = args.prompt.encode("utf-8")
        if not prompt:
            raise ValueError("expected a non-empty --prompt")
        tokens = generate(
            model,
            jnp.asarray(np.frombuffer(prompt, np.uint8).astype(np.int32)),
            args.tokens,
            temperature=args.temperature,
            top_k=args.top_k,
            key=jr.key(args.seed),
            state=state,
        )
    except _user_errors() as e:
        raise _Usage(_one_line(e)) from None
    text = bytes(np.asarray(tokens, np.uint8)).decode("utf-8", errors="replace")
    print(f"# {recipe.name} ({recipe.preset}) at step {meta['step']}", file=sys.stderr)
    print(args.prompt + text)
    return 0


def add_generate_parser(sub) -> None:
    g = sub.add_parser(
        "generate",
        help="sample text from a trained byte-level language model (a run of an *-lm recipe)",
    )
    g.add_argument("run_dir", help="the --out of a `seqkit train` run of a language-model recipe")
    g.add_argument("--prompt", required=True, help="the text to continue (its UTF-8 bytes)")
    g.add_argument("-n", "--tokens", type=positive_int, default=200, help="bytes to generate (default 200)")
    g.add_argument(
        "--temperature", type=float, default=1.0, help="softmax temperature; 0 for greedy (default 1)"
    )
    g.add_argument("--top-k", type=positive_int, default=None, help="sample among the K most likely bytes")
    g.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    g.set_defaults(func=generate_command)
