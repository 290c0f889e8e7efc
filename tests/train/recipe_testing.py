"""What the recipe-table tests share: fake corpora, recipes pointed at them, a
training step traced shapes-only, and two real optimizer steps."""

import dataclasses

import equinox as eqx
import jax
import jax.random as jr
import numpy as np
from fake_corpora import write_aan, write_cifar, write_imdb

import seqkit.train as st
from seqkit.data import batches


def write_corpora(root):
    """Fake CIFAR-10, IMDb and AAN in their public formats under `root`: the
    `data_dir` of each dataset name that reads them."""
    cifar = write_cifar(root / "cifar")
    return {
        "cifar_gray": cifar,
        "scifar": cifar,
        "imdb": write_imdb(root / "imdb", per_class=60),
        "aan": write_aan(root / "aan", sizes=(120, 20, 20)),
    }


def with_data(r, corpora):
    """`r` reading its corpus from `corpora` (ListOps and Pathfinder are generated)."""
    if r.data.name not in corpora:
        return r
    return dataclasses.replace(r, data=dataclasses.replace(r.data, data_dir=str(corpora[r.data.name])))


def traced_step(r, sources):
    """One training step of `r` at its own sizes (batch, width, depth, length),
    traced shapes-only: model, state and optimizer state are built under
    `eqx.filter_eval_shape` and the jit-compiled step is traced, never compiled or
    run. Returns the step's metrics as shapes."""
    example = sources["train"][0]
    optimizer = r.build_optimizer()

    def init(key):
        model, state = r.build_model(example["inputs"], key=key)
        return model, state, optimizer.init(eqx.filter(model, eqx.is_inexact_array))

    model, state, opt_state = eqx.filter_eval_shape(init, jr.key(0))
    b = r.trainer.batch_size
    batch = {
        k: jax.ShapeDtypeStruct((b, *np.shape(v)), np.asarray(v).dtype)
        for k, v in example.items()
        if k in ("inputs", "label", "mask")
    }
    step = st.make_train_step(optimizer, objective=r.trainer.objective)
    out = eqx.filter_eval_shape(step, model, state, opt_state, batch, st.step_key(0, 0))
    return out[3]


def assert_step_traces(r):
    """`r`'s training step, traced at its own sizes on its own data, gives scalar
    loss, accuracy and gradient norm."""
    metrics = traced_step(r, r.make_sources())
    assert {k: v.shape for k, v in metrics.items()} == {"loss": (), "accuracy": (), "grad_norm": ()}


def two_steps(r):
    """Two real optimizer steps of `r` on its first batches: the losses and the
    final optimizer state."""
    sources = r.make_sources()
    r.validate(sources)
    built = r.build(sources=sources)
    opt_state = built.optimizer.init(eqx.filter(built.model, eqx.is_inexact_array))
    step = st.make_train_step(built.optimizer, objective=r.trainer.objective)
    model, state = built.model, built.state
    # As the trainer draws them (trime_long: consecutive chunks per batch).
    it = batches(sources["train"], batch_size=r.trainer.batch_size, seed=0, **r.trainer.batch_options())
    losses = []
    for i in range(2):
        model, state, opt_state, metrics = step(model, state, opt_state, next(it), st.step_key(0, i))
        losses.append(float(metrics["loss"]))
    return losses, opt_state
