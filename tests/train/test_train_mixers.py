"""Mixer configs in recipes: every registered kind trains through a recipe, a new
family joins by defining its config (no edit to the recipe builder or the
optimizer), configs match their constructors, and `ModelConfig`'s pattern."""

import dataclasses
import inspect
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from train_fixtures import batches, sources

import seqkit.attention as sa
import seqkit.nn as snn
import seqkit.train as st


class CumsumMixer(snn.AbstractMixer):
    """A family seqkit has never heard of: a decayed running sum, one SSM-like leaf."""

    log_rate: jax.Array
    mix: eqx.nn.Linear
    d_model: int = eqx.field(static=True)

    def __init__(self, d_model, *, init_rate=0.5, key):
        self.log_rate = jnp.full((d_model,), jnp.log(init_rate))
        self.mix = eqx.nn.Linear(d_model, d_model, key=key)
        self.d_model = d_model

    def __call__(self, x, *, mask=None, key=None):
        a = jnp.exp(self.log_rate)
        _, y = jax.lax.scan(lambda h, u: (a * h + u, a * h + u), jnp.zeros_like(x[0]), x)
        return jax.vmap(self.mix)(y)

    def ssm_parameters(self):
        return (self.log_rate,)


@dataclasses.dataclass
class CumsumConfig(snn.MixerConfig):
    """Its config, defined beside it: this is all a family adds to reach recipes."""

    kind: ClassVar[str] = "test-cumsum"
    init_rate: float = 0.5

    def build(self, d_model, *, max_length, key):
        return CumsumMixer(d_model, init_rate=self.init_rate, key=key)


def tiny(mixers, *, n_layers=1, pattern=None, steps=2):
    return st.Recipe(
        name="tiny-mixers",
        model=st.ModelConfig(d_model=8, n_layers=n_layers, mixers=mixers, pattern=pattern, norm="layer"),
        data=st.DataConfig(name="sign", n_classes=2),
        optimizer=st.OptimizerConfig(lr=0.01, grad_clip=1.0),
        schedule=st.ScheduleConfig(warmup_steps=1, total_steps=steps),
        trainer=st.TrainerConfig(batch_size=4, seed=0),
    )


def two_steps(recipe, srcs):
    built = recipe.build(sources=srcs)
    params = eqx.filter(built.model, eqx.is_inexact_array)
    opt_state = built.optimizer.init(params)
    step = st.make_train_step(built.optimizer)
    model, state = built.model, built.state
    it = batches(srcs["train"], batch_size=recipe.trainer.batch_size, seed=0)
    losses = []
    for i in range(2):
        model, state, opt_state, metrics = step(model, state, opt_state, next(it), st.step_key(0, i))
        losses.append(float(metrics["loss"]))
    return built.model, model, opt_state, losses


# Options that keep the default tier fast (the defaults are sized for long sequences);
# any other kind, a new family's included, trains at its defaults.
SMALL = {
    "mha": ["chunk_size=8"],
    "bigbird": ["block_size=4", "num_random=1", "num_global=1"],
    "performer": ["num_features=16"],
    "kernelized": ["num_features=16"],
    "sinkhorn": ["block_size=4"],
    "reformer": ["chunk_size=4"],
    "luna": ["packed_len=4"],
    "long-short": ["window_size=6", "rank=4"],
    "gss": ["state_size=16"],
    "mega": ["chunk_size=8"],
    "s4": ["state_size=8"],
    "s4d": ["state_size=8"],
    "dss": ["state_size=8"],
    "ema": ["ndim=4"],
}


@pytest.mark.parametrize("kind", snn.MixerConfig.kinds())
def test_every_kind_trains_two_steps_through_a_recipe(kind):
    # A kind at its defaults, as `--set model.mixers=KIND` gives it, then made small.
    sets = [f"model.mixers={kind}", *(f"model.mixers.0.{o}" for o in SMALL.get(kind, []))]
    recipe = st.override(tiny([]), sets)
    srcs = sources(n_train=8, n_eval=4, L=16)
    recipe.validate(srcs)
    before, after, opt_state, losses = two_steps(recipe, srcs)
    assert type(before.blocks[0].mixer).__name__ != "SequenceModel"
    assert all(np.isfinite(losses)), losses
    assert int(opt_state.total_notfinite) == 0
    # The mixer's own parameters moved, and stayed finite.
    old = jax.tree.leaves(eqx.filter(before.blocks[0].mixer, eqx.is_inexact_array))
    new = jax.tree.leaves(eqx.filter(after.blocks[0].mixer, eqx.is_inexact_array))
    assert all(bool(jnp.all(jnp.isfinite(n))) for n in new)
    assert any(not np.array_equal(o, n) for o, n in zip(old, new, strict=True))


def test_a_new_family_needs_only_its_config():
    assert "test-cumsum" in snn.MixerConfig.kinds()
    recipe = st.override(
        tiny([snn.S4DConfig(state_size=4)], n_layers=3),
        ["model.mixers.1=test-cumsum", "model.mixers.1.init_rate=0.9", "model.pattern=0,1,1"],
    )
    assert recipe.model.mixers[1] == CumsumConfig(init_rate=0.9)
    assert st.recipe_from_dict(st.recipe_to_dict(recipe)) == recipe
    srcs = sources(n_train=8, n_eval=4, L=16)
    recipe.validate(srcs)
    before, after, _, losses = two_steps(recipe, srcs)
    assert [type(b.mixer).__name__ for b in before.blocks] == ["SSMLayer", "CumsumMixer", "CumsumMixer"]
    assert float(jnp.exp(before.blocks[1].mixer.log_rate[0])) == pytest.approx(0.9)
    assert before.blocks[1].mixer is not before.blocks[2].mixer  # one mixer per layer, no sharing
    assert all(np.isfinite(losses))
    # The optimizer put the declared leaf in the SSM group without being told the family.
    labels = st.param_labels(eqx.filter(before, eqx.is_inexact_array))
    assert labels.blocks[1].mixer.log_rate == "ssm" and labels.blocks[1].mixer.mix.weight == "default"


def _constructor(cls):
    return inspect.signature(cls.__init__).parameters


# Config defaults that differ from the constructor's on purpose (documented on the configs).
DEVIATIONS = {
    ("gss", "causal"), ("gss", "ssm_dim"), ("mega", "z_dim"), ("mega", "v_dim"),
    ("spade", "window_size"), ("spade", "mode"),  # SPADE's sliding window of 128
}  # fmt: skip
# Constructor arguments a config derives instead of holding (from the model's length).
DERIVED = {"d_model", "key", "inference", "max_len", "max_length", "self"}


@pytest.mark.parametrize("kind", snn.MixerConfig.kinds())
def test_config_options_are_the_constructor_arguments(kind, getkey):
    config = snn.MixerConfig.from_kind(kind)
    mixer = eqx.filter_eval_shape(lambda k: config.build(8, max_length=16, key=k), getkey())
    assert isinstance(mixer, snn.AbstractMixer) and mixer.d_model == 8

    def parameters(m):
        if isinstance(m, snn.SSMLayer):
            return {**_constructor(type(m.core)), **_constructor(snn.SSMLayer)}
        if isinstance(m, snn.Fusion):  # a composite: its own options and its two parts'
            return {**parameters(m.global_mixer), **parameters(m.local_mixer), **_constructor(snn.Fusion)}
        return dict(_constructor(type(m)))

    params = parameters(mixer)
    for name, value in config.options().items():
        assert name in params, f"{kind}: option {name!r} is not a constructor argument"
        default = params[name].default
        if default is not inspect.Parameter.empty and (kind, name) not in DEVIATIONS:
            if name == "bidirectional":
                assert value is True  # configs default to the non-causal form
            else:
                assert value == default, f"{kind}.{name}: {value!r} != constructor default {default!r}"
    if isinstance(mixer, sa.AbstractAttention):
        # Every keyword of an attention class is reachable from its config.
        missing = set(params) - DERIVED - set(config.options())
        assert not missing, f"{kind}: constructor options without a config field: {missing}"


def test_from_kind_and_registry_errors():
    assert snn.MixerConfig.from_kind("local", mode="sliding") == sa.LocalAttentionConfig(mode="sliding")
    with pytest.raises(ValueError, match="unknown mixer kind 'nope'; expected one of: .*local"):
        snn.MixerConfig.from_kind("nope")
    with pytest.raises(
        ValueError, match="unknown option 'windw' for mixer kind 'local'; expected one of: .*"
    ):
        snn.MixerConfig.from_kind("local", windw=3)
    with pytest.raises(TypeError, match="already taken"):

        @dataclasses.dataclass
        class Clash(snn.MixerConfig):
            kind: ClassVar[str] = "s4"

            def build(self, d_model, *, max_length, key):
                raise AssertionError


def test_pattern_resolution():
    s4, local = snn.S4Config(), sa.LocalAttentionConfig(mode="sliding")
    assert st.ModelConfig(n_layers=3, mixers=[s4]).layer_mixers() == [s4, s4, s4]
    assert st.ModelConfig(n_layers=2, mixers=[s4, local]).layer_mixers() == [s4, local]
    spade = st.ModelConfig(n_layers=6, mixers=[s4, local], pattern=[0, 1, 1, 1, 1, 1])
    assert spade.layer_mixers() == [s4] + [local] * 5
    cases = [
        (3, [s4, local], None, "model.mixers: 2 mixers for n_layers=3; expected 1 (used by every layer), 3"),
        (
            3,
            [s4, local],
            [0, 1],
            "model.pattern: expected 3 mixer indices (one per layer, n_layers=3), got 2",
        ),
        (3, [s4, local], [0, 1, 2], "model.pattern: expected indices in 0..1 (model.mixers has 2), got 2"),
        (3, [], None, "model.mixers: expected at least one mixer"),
    ]
    for n, mixers, pattern, message in cases:
        m = st.ModelConfig(n_layers=n, mixers=mixers, pattern=pattern)
        with pytest.raises(st.RecipeError) as e:
            m.layer_mixers()
        assert message in str(e.value) and "\n" not in str(e.value)


def test_layers_get_their_own_mixers(getkey):
    recipe = tiny([snn.S4DConfig(state_size=4), sa.LocalAttentionConfig(window_size=4)], n_layers=3)
    recipe = dataclasses.replace(recipe, model=dataclasses.replace(recipe.model, pattern=[0, 1, 1]))
    model, _ = recipe.build_model(np.zeros((16, 1), np.float32), key=getkey())
    kinds = [type(b.mixer).__name__ for b in model.blocks]
    assert kinds == ["SSMLayer", "LocalAttention", "LocalAttention"]
    w1, w2 = (b.mixer.proj.query.weight for b in model.blocks[1:])
    assert not np.array_equal(w1, w2)  # built with different keys
    assert model.blocks[1].mixer.window_size == 4


def test_constructor_errors_are_one_line_recipe_errors(tmp_path):
    srcs = sources(n_train=8, n_eval=4, L=16)
    bad = {
        # d_model 8 does not split into 3 heads: the class's own check, named by entry and layer.
        "model.mixers.1.num_heads=3": (
            "model.mixers.1 (local, layer 1): d_model=8 must be divisible by num_heads=3"
        ),
        "model.mixers.0.state_size=-2": "model.mixers.0 (s4d, layer 0)",
        "model.mixers.1.window_size=0": "model.mixers.1 (local, layer 1): expected window_size >= 1, got 0",
    }
    base = tiny([snn.S4DConfig(state_size=4), sa.LocalAttentionConfig()], n_layers=2)
    for text, message in bad.items():
        recipe = st.override(base, [text])
        with pytest.raises(st.RecipeError) as e:
            recipe.validate(srcs)
        assert message in str(e.value) and "\n" not in str(e.value), str(e.value)
        # train() validates first: nothing is written.
        with pytest.raises(st.RecipeError):
            st.train(recipe, tmp_path / "run", sources=srcs, batches=batches, progress=False)
        assert not (tmp_path / "run").exists()
