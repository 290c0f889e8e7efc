"""Recipes: a plain dataclass tree (model, data, optimizer, schedule, trainer) with
`build()`, and `--set key=value` overrides with type checking."""

import dataclasses
import math
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, NamedTuple

import equinox as eqx
import jax
import jax.random as jr
import numpy as np
import optax
from jaxtyping import PRNGKeyArray

# seqkit.attention registers the attention mixer configs (kinds "local", "mha", ...).
import seqkit.attention  # noqa: F401
from seqkit import nn as snn
from seqkit.nn import MixerConfig

from ._mesh import check_processes, parse_mesh
from ._optim import make_optimizer
from ._pretrain import check_patch_inputs, check_run_dir, transfer_backbone


class RecipeError(ValueError):
    """A recipe, preset, key or value that is not accepted (a one-line message)."""


def _bounded(
    default: Any,
    *,
    lo: float | int | None = None,
    below: float | int | None = None,
    above: float | int | None = None,
):
    """A dataclass field whose value `Recipe.validate` keeps in range: `>= lo`,
    `< below`, `> above` (`None` passes, for optional fields)."""
    bounds = {k: v for k, v in (("lo", lo), ("below", below), ("above", above)) if v is not None}
    return dataclasses.field(default=default, metadata={"bounds": bounds})


def _range_text(bounds: Mapping[str, float | int]) -> str:
    parts = {"lo": ">= {}", "above": "> {}", "below": "< {}"}
    return " and ".join(parts[k].format(v) for k, v in bounds.items())


_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _check_bounds(value: Any, bounds: Mapping[str, float | int], where: str, tp: Any) -> None:
    if value is None or not bounds:
        return
    ok = (
        ("lo" not in bounds or value >= bounds["lo"])
        and ("above" not in bounds or value > bounds["above"])
        and ("below" not in bounds or value < bounds["below"])
    )
    # inf passes a lower bound, and a float beyond float32's range becomes inf in training
    if isinstance(value, float) and not (math.isfinite(value) and abs(value) <= _FLOAT32_MAX):
        raise RecipeError(
            f"{where}: expected a finite number {_range_text(bounds)} (and within float32's "
            f"{_FLOAT32_MAX:.4g}), got {value!r}"
        )
    if not ok:
        kind = "an int" if tp is int or int in typing.get_args(tp) else "a number"
        raise RecipeError(f"{where}: expected {kind} {_range_text(bounds)}, got {value!r}")


@dataclasses.dataclass
class ModelConfig:
    """The `SequenceModel`: residual blocks around any mixers, a typed config per mixer.

    `mixers` lists [`seqkit.nn.MixerConfig`][]s (`S4Config`, `LocalAttentionConfig`,
    `MegaConfig`, ...); `pattern[i]` picks the mixer of layer `i`. With no
    `pattern`, one mixer serves every layer, or `n_layers` mixers one layer each.
    Every layer builds its own mixer (no shared weights). SPADE (Zuo et al.,
    "Efficient Long Sequence Modeling via State Space Augmented Transformer",
    2022) is `mixers=[S4Config(), LocalAttentionConfig(mode="sliding")]`,
    `pattern=[0, 1, 1, 1, 1, 1]`.

    The block options (`norm`, `prenorm`, residual `dropout`, `ffn_mult`,
    `ffn_activation`), `pool` and `positions` (`"none"`, `"sinusoidal"` or
    `"learned"` position embeddings added to the encoded inputs; the table's
    `max_length` is the data's sequence length) are those of
    [`seqkit.nn.SequenceModel`][].

    `dual`: two sequences per example through one shared encoder, combined
    `[u, v, u⊙v, u−v]`, MLP head (LRA Retrieval; [`seqkit.nn.DualEncoder`][]).

    `latents`: a [`seqkit.nn.PerceiverAR`][] instead of a `SequenceModel`: the
    last `latents` positions cross-attend (causally, `cross_heads` heads) to the
    whole context, then the layers above run on them alone; logits for those
    positions only (tokens in, `pool="none"`; the model has LayerNorm, pre-norm,
    GELU and a learned position table, and other values of `norm`, `prenorm`,
    `ffn_activation` and `positions` are refused). `None` (default): no latents.

    `segments`: a [`seqkit.nn.HierarchicalModel`][] instead: `n_layers`
    blocks within each segment of `segments[0]` positions, mean-pooled, then
    `n_layers` blocks within groups of `segments[1]` of those vectors, and so
    on, with a last level over what remains (the data's length must be a
    multiple of the product; LayerNorm only). `None` (default): one level.

    `pool="none"`: logits at every position, for data with a label per position
    (language modeling: the next token). Then every mixer must be causal
    (`causal=true`, or `bidirectional=false` for SSM layers), or position `t`
    would see the token it predicts; `validate` checks it.

    `init_from`: the directory of a finished or checkpointed run whose model
    starts this one (fine-tuning): every array of its backbone (input
    projection, class token, positions, blocks, final norm) is copied in, the
    head is new. The two models must have the same layout (`d_model`, layers,
    mixers, pooling, positions, input width); a pretraining run with
    `trainer.objective=masked_patches` hands on its encoder. `None`: from scratch.
    """

    d_model: int = _bounded(256, lo=1)
    n_layers: int = _bounded(6, lo=1)
    mixers: list[MixerConfig] = dataclasses.field(default_factory=lambda: [snn.S4Config()])
    pattern: list[int] | None = None
    norm: Literal["layer", "batch"] = "batch"
    prenorm: bool = True
    dropout: float = _bounded(0.0, lo=0.0, below=1.0)
    ffn_mult: int = _bounded(0, lo=0)
    ffn_activation: Literal["gelu", "silu", "relu"] = "gelu"
    pool: Literal["mean", "last", "cls", "none"] = "mean"
    dual: bool = False
    latents: int | None = _bounded(None, lo=1)
    cross_heads: int = _bounded(4, lo=1)
    segments: list[int] | None = None
    positions: Literal["none", "sinusoidal", "learned"] = "none"
    init_from: str | None = None

    def layer_pattern(self) -> list[int]:
        """The index into `mixers` of every layer; a `RecipeError` when `mixers`,
        `pattern` and `n_layers` do not fit together."""
        n, k = self.n_layers, len(self.mixers)
        if n < 1:
            raise RecipeError(f"model.n_layers: expected at least 1, got {n}")
        if k == 0:
            raise RecipeError("model.mixers: expected at least one mixer, got none")
        if self.pattern is None:
            if k == 1:
                return [0] * n
            if k == n:
                return list(range(n))
            raise RecipeError(
                f"model.mixers: {k} mixers for n_layers={n}; expected 1 (used by every layer), {n} "
                f"(one per layer), or a model.pattern of {n} indices in 0..{k - 1}"
            )
        if len(self.pattern) != n:
            raise RecipeError(
                f"model.pattern: expected {n} mixer indices (one per layer, n_layers={n}), "
                f"got {len(self.pattern)}"
            )
        for i, p in enumerate(self.pattern):
            if not 0 <= p < k:
                raise RecipeError(
                    f"model.pattern: expected indices in 0..{k - 1} (model.mixers has {k}), "
                    f"got {p} at layer {i}"
                )
        return list(self.pattern)

    def layer_mixers(self) -> list[MixerConfig]:
        """The mixer config of every layer, `mixers[pattern[i]]`."""
        return [self.mixers[j] for j in self.layer_pattern()]


# DataConfig fields that are options of one dataset's source: `make_source` gets
# those that are set (not None), and refuses one its dataset does not have.
_SOURCE_OPTIONS = ("contour_length", "style", "max_length", "as_tokens", "patch_size")
# The training examples `Recipe.validate` reads to check token and label ranges.
CHECKED_EXAMPLES = 16


@dataclasses.dataclass
class DataConfig:
    """The data source (`seqkit.data.make_source`) and its splits.

    `contour_length` and `style` (Pathfinder), `max_length` (ListOps, IMDb, AAN),
    `as_tokens` (Pathfinder, grayscale CIFAR) and `patch_size` (the image datasets:
    images as sequences of flattened patches; IMDb: reviews rendered to a line
    of text and cut into patches, PIXEL's input) are options of the dataset's
    source, passed only when set; `None` keeps the dataset's default.
    """

    name: str = "pathfinder32"
    contour_length: int | None = None
    style: str | None = None
    max_length: int | None = _bounded(None, lo=1)
    as_tokens: bool | None = None
    patch_size: int | None = _bounded(None, lo=1)
    data_dir: str | None = None
    train_size: int | None = _bounded(None, lo=1)
    val_size: int | None = _bounded(None, lo=1)
    test_size: int | None = _bounded(None, lo=1)
    seed: int = _bounded(0, lo=0)
    n_classes: int = _bounded(2, lo=2)
    vocab_size: int = _bounded(256, lo=1)
    worker_count: int = _bounded(0, lo=0)
    memory_cache: bool = False


@dataclasses.dataclass
class OptimizerConfig:
    """AdamW with parameter groups: SSM parameters (Λ, p, B, log Δ) at `ssm_lr` and
    `ssm_weight_decay`, the rest at `lr` and `weight_decay`; with
    `decay_norms_and_biases=False`, the normalization layers' scales and offsets
    and the biases inside the blocks at `lr` without weight decay (as the S4
    authors' code; [`seqkit.train.param_labels`][])."""

    lr: float = _bounded(0.004, lo=0.0)
    weight_decay: float = _bounded(0.05, lo=0.0)
    ssm_lr: float = _bounded(0.001, lo=0.0)
    ssm_weight_decay: float = _bounded(0.0, lo=0.0)
    b1: float = _bounded(0.9, lo=0.0, below=1.0)
    b2: float = _bounded(0.999, lo=0.0, below=1.0)
    eps: float = _bounded(1e-8, above=0.0)
    grad_clip: float = _bounded(0.0, lo=0.0)  # 0: no clipping
    decay_norms_and_biases: bool = True  # False: no weight decay on them (`param_labels`)


@dataclasses.dataclass
class ScheduleConfig:
    """Linear warmup then cosine decay, stepped per optimizer step.

    Update `t` (counted from 0) uses the rate `lr(t)`, so with a warmup the first
    update has rate 0 (optax's convention); an update skipped for non-finite
    gradients does not advance the schedule."""

    warmup_steps: int = _bounded(1000, lo=0)
    total_steps: int = _bounded(10000, lo=1)


@dataclasses.dataclass
class TrainerConfig:
    """The training loop: batch size, length, evaluation, checkpoints, logging, devices.

    `mesh`: the devices of one host to train on, as comma-separated `AXIS:SIZE`
    entries with `AXIS` one of `data` and `model`: `"data:8"` splits every batch
    over 8 devices (data parallel: parameters, BatchNorm and optimizer state
    replicated); `"data:4,model:2"` also splits each parameter (and its optimizer
    moments) over pairs of devices along its largest dimension divisible by 2
    (FSDP-style). The mesh takes the first `data * model` devices;
    `batch_size` and `eval_batch_size` must be multiples of the `data` size. The
    step computes the same function as without a mesh (BatchNorm statistics
    over the whole batch), so results agree to float rounding (which Adam
    magnifies in a parameter of zero true gradient, such as a pre-norm BatchNorm
    model's encoder bias: see the multi-device guide). `""` (the
    default) or `"none"`: one device, no mesh. It is how a run executes, not what it
    computes: a run may be resumed with another mesh. In a run of several
    processes (`seqkit.train.init_distributed`) the mesh is required and spans
    them: `data` a multiple of the process count, each process feeding its own
    rows of every batch.

    `objective`: the training loss, `"cross_entropy"`, or for language models
    TRIME's objective with in-batch memories (Zhong, Lei and Chen, EMNLP 2022;
    [`seqkit.train.trime_loss`][]): `"trime_local"` (earlier positions of the
    same segment), `"trime_batch"` (also the other segments of the batch) or
    `"trime_long"` (also the earlier segments of the batch, the paper's
    long-term memory: each training batch is then `batch_size` consecutive
    chunks of the text, in order, see `batch_options`; it needs a byte corpus,
    `ByteSource`). Evaluation then scores TRIME's distribution with local
    memories only, and `trime_long` also with the earlier rows of each
    evaluation batch (`eval_batch_size` consecutive chunks, in order).
    `"masked_patches"`: PIXEL's pretraining (Rust et al., ICLR 2023): the model
    is a [`seqkit.nn.PixelPretrainer`][] around the configured `SequenceModel`
    (its head left out), reconstructing spans of hidden patches of real-valued
    patch inputs (`data.patch_size`); labels are not used, accuracy is NaN, and
    a later run fine-tunes the encoder with `model.init_from`.

    `kernels`: what the kernels' `impl="auto"` means in this run (training and
    evaluation): `"auto"` (Pallas on GPU/TPU where a kernel supports the call,
    XLA otherwise), `"xla"` (the XLA references everywhere) or `"pallas"` (the
    Pallas kernels; interpret mode on CPU, slow, for testing).
    """

    batch_size: int = _bounded(64, lo=1)
    steps: int | None = _bounded(None, lo=1)
    eval_every: int = _bounded(1000, lo=1)
    eval_batch_size: int | None = _bounded(None, lo=1)
    checkpoint_every: int = _bounded(500, lo=1)
    log_every: int = _bounded(50, lo=1)
    seed: int = _bounded(0, lo=0, below=2**32)  # PRNG keys and the batch order are 32-bit
    mesh: str = ""
    objective: Literal["cross_entropy", "trime_local", "trime_batch", "trime_long", "masked_patches"] = (
        "cross_entropy"
    )
    kernels: Literal["auto", "xla", "pallas"] = "auto"

    def batch_options(self) -> dict[str, Any]:
        """What `objective` asks of `seqkit.data.batches` when it draws training
        batches: `{"consecutive": True}` for `trime_long` (every batch is
        `batch_size` consecutive examples, in order, so its rows are consecutive
        segments of the text), else nothing."""
        return {"consecutive": True} if self.objective == "trime_long" else {}

    def mesh_sizes(self) -> dict[str, int]:
        """`mesh` checked against the batch sizes and this host's devices:
        `{"data": D, "model": M}`, or `{}` for no mesh.

        **Raises:** `RecipeError` for an unknown axis, a size below 1, a batch
        size not a multiple of `D`, or more devices than `jax.device_count()`;
        in a run of several processes also for no mesh or a `D` not a multiple
        of the process count (see `seqkit.train.make_mesh`).
        """
        try:
            sizes = parse_mesh(self.mesh)
            check_processes(sizes)
        except ValueError as e:
            raise RecipeError(f"trainer.mesh: {e}") from None
        if not sizes:
            return sizes
        d = sizes["data"]
        for key in ("batch_size", "eval_batch_size"):
            value = getattr(self, key)
            if value is not None and value % d:
                raise RecipeError(
                    f"trainer.{key}: expected a multiple of the data axis size {d} "
                    f"(trainer.mesh={self.mesh}), got {value}"
                )
        n, have = math.prod(sizes.values()), jax.device_count()
        if n > have:
            raise RecipeError(
                f"trainer.mesh={self.mesh} needs {n} devices; {have} exist (jax.device_count()). "
                f"On a CPU, fake devices with XLA_FLAGS=--xla_force_host_platform_device_count={n} "
                "set before JAX starts"
            )
        return sizes


class MemoryCache:
    """A source that keeps every example it has produced (generated sets are then
    generated once, not once per epoch). For splits that fit in memory."""

    def __init__(self, source: Any):
        self.source = source
        self.cache: dict[int, Any] = {}

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int) -> Any:
        i = int(i)
        if i not in self.cache:
            self.cache[i] = self.source[i]
        return self.cache[i]

    def __getstate__(self):  # workers get the source, not the cache
        return {"source": self.source, "cache": {}}


class Built(NamedTuple):
    """What `Recipe.build()` returns."""

    model: eqx.Module
    state: eqx.nn.State
    optimizer: optax.GradientTransformation
    sources: dict[str, Any]


@dataclasses.dataclass
class Recipe:
    """A training recipe: everything a run needs, as plain data.

    Edit it in code (`dataclasses.replace`) or with `override(recipe, ["model.n_layers=4"])`;
    `validate()` checks it whole (types, layer pattern, and the model built
    shapes-only); `build()` makes the model, its state, the optimizer and the
    data sources.
    """

    name: str = "custom"
    description: str = ""
    preset: str = "default"
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    optimizer: OptimizerConfig = dataclasses.field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = dataclasses.field(default_factory=ScheduleConfig)
    trainer: TrainerConfig = dataclasses.field(default_factory=TrainerConfig)

    @property
    def steps(self) -> int:
        return self.trainer.steps if self.trainer.steps is not None else self.schedule.total_steps

    def make_sources(self) -> dict[str, Any]:
        """The train/val/test sources from `seqkit.data.make_source`."""
        try:
            from seqkit.data import make_source
        except ImportError as e:  # the data pipelines are an optional part of an install
            raise RecipeError(f"seqkit.data.make_source is not available: {e}") from None
        d = self.data
        options = {k: getattr(d, k) for k in _SOURCE_OPTIONS if getattr(d, k) is not None}
        sizes = {"train": d.train_size, "val": d.val_size, "test": d.test_size}
        sources = {
            split: make_source(d.name, split, data_dir=d.data_dir, seed=d.seed, size=size, **options)
            for split, size in sizes.items()
        }
        if d.memory_cache:
            sources = {k: MemoryCache(v) for k, v in sources.items()}
        return sources

    def build_model(
        self, example_inputs: np.ndarray, *, key: PRNGKeyArray
    ) -> tuple[eqx.Module, eqx.nn.State]:
        """The model for inputs shaped like `example_inputs` (one example): a
        `SequenceModel` for one sequence, `(L,)` tokens or `(L, C)` real, or with
        `model.dual` a `DualEncoder` for two, `(2, L)` or `(2, L, C)`.

        Layer `i` gets `model.layer_mixers()[i].build(d_model, max_length=L, key=k_i)`
        with `L` the length of one sequence (plus one with `pool="cls"`). A mixer
        that cannot be built raises a one-line `RecipeError` naming its entry.
        """
        m = self.model
        x = np.asarray(example_inputs)
        tokens = np.issubdtype(x.dtype, np.integer)
        # Two sequences: one more (leading) axis than a single sequence, of size 2.
        pair = x.ndim == (2 if tokens else 3) and x.shape[0] == 2
        if m.dual and not pair:
            raise RecipeError(
                f"model.dual=true needs examples holding two sequences, inputs (2, L) or (2, L, C); "
                f"data.name={self.data.name} gives {x.dtype} {x.shape}"
            )
        if pair and not m.dual:
            raise RecipeError(
                f"data.name={self.data.name} gives examples holding two sequences, inputs {x.dtype} "
                f"{x.shape}; a single-sequence model reads (L,) or (L, C): use --set model.dual=true"
            )
        one = x[0] if m.dual else x
        if tokens and one.ndim == 1:
            enc = {"vocab_size": self.data.vocab_size}
        elif not tokens and one.ndim == 2:
            enc = {"d_in": one.shape[1]}
        else:
            raise RecipeError(f"expected examples of shape (L, C) or integer (L,), got {x.dtype} {x.shape}")
        L = one.shape[0] + (1 if m.pool == "cls" else 0)
        pattern = m.layer_pattern()
        # Position embeddings cover the L positions of one sequence (class token included).
        pos = {} if m.positions == "none" else {"positions": m.positions, "max_length": L}

        def mixer(i: int, k: PRNGKeyArray):
            config = m.mixers[pattern[i]]
            try:
                return config.build(m.d_model, max_length=L, key=k)
            except jax.errors.ConcretizationTypeError:
                raise  # not the recipe's fault: see `validate`
            except (ValueError, TypeError) as e:
                raise RecipeError(
                    f"model.mixers.{pattern[i]} ({config.kind}, layer {i}): {_first_line(e)}"
                ) from e

        pretrain = self.trainer.objective == "masked_patches"
        if pretrain and (m.latents is not None or m.segments is not None or m.dual):
            raise RecipeError(
                "trainer.objective=masked_patches pretrains a single-sequence SequenceModel; "
                "model.latents, model.segments and model.dual build other models"
            )
        if m.latents is not None:
            return self._build_perceiver_ar(one, mixer, key)
        if m.segments is not None:
            return self._build_hierarchical(one, enc, key)
        model, state = _make_with_state(
            snn.DualEncoder if m.dual else snn.SequenceModel,
            "model",
            d_model=m.d_model,
            n_classes=None if pretrain else self.data.n_classes,
            n_layers=m.n_layers,
            mixer=mixer,
            norm=m.norm,
            prenorm=m.prenorm,
            dropout=m.dropout,
            ffn_mult=m.ffn_mult,
            ffn_activation=m.ffn_activation,
            pool=m.pool,
            key=key,
            **enc,
            **pos,
        )
        if pretrain:  # the encoder inside PIXEL's reconstruction model; its own key
            try:
                model = snn.PixelPretrainer(model, key=jr.fold_in(key, 1))
            except ValueError as e:
                raise RecipeError(f"trainer.objective=masked_patches: {_first_line(e)}") from e
        return model, state

    def _build_hierarchical(
        self, one: np.ndarray, enc: dict, key: PRNGKeyArray
    ) -> tuple[eqx.Module, eqx.nn.State]:
        m = self.model
        segments = list(m.segments or [])
        group = math.prod(segments) if segments else 0
        if not segments or min(segments) < 1 or one.shape[0] % group:
            raise RecipeError(
                f"model.segments: expected positive sizes whose product divides the data's length "
                f"{one.shape[0]}, got {segments}"
            )
        if m.dual or m.pool not in ("mean", "last") or m.norm != "layer":
            fixes = []
            if m.pool not in ("mean", "last"):
                fixes.append("--set model.pool=mean")
            if m.norm != "layer":
                fixes.append("--set model.norm=layer")
            advice = f" ({' '.join(fixes)})" if fixes and not m.dual else ""
            raise RecipeError(
                f"model.segments (hierarchical) needs pool mean or last, norm layer and no dual; got "
                f"pool={m.pool}, norm={m.norm}, dual={m.dual}{advice}"
            )
        lengths = [*segments, one.shape[0] // group]
        pattern = m.layer_pattern()

        def mixer(level: int, i: int, k: PRNGKeyArray):
            config = m.mixers[pattern[i]]
            try:
                return config.build(m.d_model, max_length=lengths[level], key=k)
            except (ValueError, TypeError) as e:
                raise RecipeError(
                    f"model.mixers.{pattern[i]} ({config.kind}, level {level}, layer {i}): {_first_line(e)}"
                ) from e

        return _make_with_state(
            snn.HierarchicalModel,
            f"model (segments={segments})",
            d_model=m.d_model,
            n_classes=self.data.n_classes,
            segments=segments,
            mixer=mixer,
            n_layers=m.n_layers,
            ffn_mult=m.ffn_mult,
            ffn_activation=m.ffn_activation,
            dropout=m.dropout,
            pool=m.pool,
            prenorm=m.prenorm,
            positions=m.positions,
            max_length=one.shape[0],
            key=key,
            **enc,
        )

    def _build_perceiver_ar(
        self, one: np.ndarray, mixer, key: PRNGKeyArray
    ) -> tuple[eqx.Module, eqx.nn.State]:
        m = self.model
        if not np.issubdtype(one.dtype, np.integer) or one.ndim != 1 or m.dual or m.pool != "none":
            raise RecipeError(
                f"model.latents (Perceiver AR) reads integer tokens (L,) with model.pool=none, no dual; "
                f"got {one.dtype} {one.shape}, pool={m.pool}, dual={m.dual}"
            )
        # What the model is built with: refuse other values rather than ignore them
        fixed = {"norm": "layer", "prenorm": True, "ffn_activation": "gelu", "positions": "learned"}
        wrong = {k: getattr(m, k) for k, v in fixed.items() if getattr(m, k) != v}
        if wrong:
            raise RecipeError(
                "model.latents (Perceiver AR) is built with "
                + ", ".join(f"{k}={v}" for k, v in fixed.items())
                + "; got "
                + ", ".join(f"model.{k}={v}" for k, v in wrong.items())
            )
        return _make_with_state(
            snn.PerceiverAR,
            f"model (latents={m.latents})",
            vocab_size=self.data.vocab_size,
            d_model=m.d_model,
            n_latents=m.latents,
            max_length=one.shape[0],
            num_heads=m.cross_heads,
            mixer=mixer,
            n_layers=m.n_layers,
            ffn_mult=m.ffn_mult,
            dropout=m.dropout,
            key=key,
        )

    def build_optimizer(self, *, hyperparams_as_arrays: bool = False) -> optax.GradientTransformation:
        """The optimizer of `optimizer` and `schedule` ([`seqkit.train.make_optimizer`][];
        `hyperparams_as_arrays` as there: every hyperparameter an array in its state)."""
        o, s = self.optimizer, self.schedule
        return make_optimizer(
            learning_rate=o.lr,
            weight_decay=o.weight_decay,
            ssm_learning_rate=o.ssm_lr,
            ssm_weight_decay=o.ssm_weight_decay,
            warmup_steps=s.warmup_steps,
            total_steps=s.total_steps,
            b1=o.b1,
            b2=o.b2,
            eps=o.eps,
            grad_clip=o.grad_clip or None,
            decay_norms_and_biases=o.decay_norms_and_biases,
            hyperparams_as_arrays=hyperparams_as_arrays,
        )

    def build(self, *, sources: Mapping[str, Any] | None = None, key: PRNGKeyArray | None = None) -> Built:
        """Model (with state), optimizer and data sources.

        **Arguments:** `sources`, a `{"train", "val", "test"}` mapping to use instead
        of `seqkit.data.make_source`; `key`, the model's init key (default: from
        `trainer.seed`).
        """
        srcs = dict(sources) if sources is not None else self.make_sources()
        if key is None:
            key = init_key(self.trainer.seed)
        model, state = self.build_model(srcs["train"][0]["inputs"], key=key)
        if self.model.init_from is not None:
            model = self._init_from(model)
        return Built(model, state, self.build_optimizer(), srcs)

    def _init_from(self, model: eqx.Module) -> eqx.Module:
        """`model` with the backbone of the run at `model.init_from`."""
        return self.backbone_transfer()(model)

    def backbone_transfer(self) -> Callable[[eqx.Module], eqx.Module]:
        """A function giving a model of this recipe the backbone of the run at
        `model.init_from` (read once, here; `model.init_from` must be set)."""
        from ._loop import load_run  # the loop imports this module

        where = f"model.init_from={self.model.init_from}"
        _, pretrained, _, _, meta = load_run(self.model.init_from)

        def transfer(model: eqx.Module) -> eqx.Module:
            try:
                return transfer_backbone(model, pretrained, source=f"{where} (step {meta.get('step')})")
            except ValueError as e:
                raise RecipeError(_first_line(e)) from e

        return transfer

    def validate(self, sources: Mapping[str, Any] | None = None) -> None:
        """Check the whole recipe before anything is written or compiled.

        Every value against its field's type, the mixers against `pattern` and
        `n_layers`, `trainer.mesh` against this host's devices and the batch
        sizes, the schedule, and, given `sources`, the split sizes and the
        model itself: it is built under `eqx.filter_eval_shape` (shapes only, no
        arrays), so any constructor's objection surfaces here.

        **Raises:** `RecipeError` with a one-line message naming the key and what
        was expected.
        """
        _check(self, Recipe, "")
        self.model.layer_pattern()
        self.trainer.mesh_sizes()
        if self.model.init_from is not None:
            try:
                check_run_dir(self.model.init_from)
            except (FileNotFoundError, ValueError) as e:
                raise RecipeError(f"model.init_from: {e}") from None
        if self.steps < 1:
            raise RecipeError(f"the run needs at least one step, got {self.steps}")
        sched = self.schedule
        # The schedule is 0 from update total_steps on (from warmup_steps + 1 when the
        # warmup is the longer, as in LRA's Retrieval settings).
        last = sched.total_steps if sched.warmup_steps < sched.total_steps else sched.warmup_steps + 1
        if self.steps > last:
            raise RecipeError(
                f"trainer.steps={self.steps} runs past the schedule (schedule.total_steps="
                f"{sched.total_steps}, warmup_steps={sched.warmup_steps}): updates from {last + 1} on "
                f"would train at learning rate 0; set schedule.total_steps={self.steps}"
            )
        try:
            self.build_optimizer()
        except ValueError as e:
            raise RecipeError(f"optimizer/schedule: {_first_line(e)}") from e
        if sources is None:
            return
        for split in ("train", "val", "test"):
            if split not in sources:
                raise RecipeError(f"expected a {split!r} source, got splits {sorted(sources)}")
            need = self.trainer.batch_size if split == "train" else 1
            if len(sources[split]) < need:
                raise RecipeError(
                    f"the {split} split has {len(sources[split])} examples; expected at least {need}"
                )
        first = sources["train"][0]  # read once: shapes, labels and ranges
        example = np.asarray(first["inputs"])
        if self.trainer.objective == "masked_patches":  # no labels: the patches are the targets
            try:
                check_patch_inputs(example, self.data.name)
            except ValueError as e:
                raise RecipeError(str(e)) from None
        else:
            self._check_labels(example, np.asarray(first["label"]))
            self._check_ranges(sources["train"], first)
        if self.trainer.objective == "trime_long":
            self._check_consecutive(sources)
        try:
            eqx.filter_eval_shape(lambda k: self.build_model(example, key=k), jr.key(0))
        except jax.errors.ConcretizationTypeError:
            # A constructor that needs concrete values (e.g. turns its key into a
            # Python int) cannot be traced: build the model for real instead.
            self.build_model(example, key=jr.key(0))

    def _check_ranges(self, source: Any, first: Mapping[str, Any]) -> None:
        """Token ids within `data.vocab_size` and labels within `data.n_classes`, on the
        first `CHECKED_EXAMPLES` training examples (read by every process; `first`, the
        example 0 already read): an id past the embedding table would be clamped by
        the gather, and training would run on the wrong embeddings, silently."""
        items = [first, *(source[i] for i in range(1, min(CHECKED_EXAMPLES, len(source))))]
        checks = (
            ("inputs", "token ids", "data.vocab_size", self.data.vocab_size),
            ("label", "labels", "data.n_classes", self.data.n_classes),
        )
        for field, what, key, bound in checks:
            values = [np.asarray(item[field]) for item in items]
            if not values or not np.issubdtype(values[0].dtype, np.integer):
                continue  # real-valued inputs (pixels, patches): no table to index
            lo, hi = min(int(v.min(initial=0)) for v in values), max(int(v.max(initial=0)) for v in values)
            if lo < 0 or hi >= bound:
                raise RecipeError(
                    f"data.name={self.data.name} gives {what} in [{lo}, {hi}] (first {len(items)} "
                    f"training examples); {key}={bound} expects them in [0, {bound - 1}]: "
                    f"set {key} to at least {hi + 1}"
                )

    def _check_labels(self, example: np.ndarray, label: np.ndarray) -> None:
        """A label per example needs a pooled model; a label per position (the
        next token) needs `pool="none"` and causal mixers."""
        m = self.model
        if label.ndim == 0 and self.trainer.objective != "cross_entropy":
            raise RecipeError(
                f"trainer.objective={self.trainer.objective} trains a language model (a label per "
                f"position); data.name={self.data.name} has one label per example: use cross_entropy"
            )
        if label.ndim == 0:
            if m.pool == "none":
                raise RecipeError(
                    f"model.pool=none gives logits per position, but data.name={self.data.name} has one "
                    "label per example: use pool mean, last or cls"
                )
            return
        if m.pool != "none" or m.dual:
            raise RecipeError(
                f"data.name={self.data.name} has a label per position, {label.dtype} {label.shape} "
                f"(language modeling): use --set model.pool=none (got pool={m.pool}"
                + (", dual=true" if m.dual else "")
                + ")"
            )
        if label.shape != example.shape[:1]:
            raise RecipeError(
                f"data.name={self.data.name}: expected a label per position, shape {example.shape[:1]}, "
                f"got {label.shape}"
            )
        for i, config in enumerate(m.mixers):
            if getattr(config, "causal", True) is False or getattr(config, "bidirectional", False) is True:
                field = "causal=true" if hasattr(config, "causal") else "bidirectional=false"
                raise RecipeError(
                    f"model.mixers.{i} ({config.kind}) is not causal, and a model predicting the next "
                    f"token must not see it: --set model.mixers.{i}.{field}"
                )

    def _check_consecutive(self, sources: Mapping[str, Any]) -> None:
        """`trime_long` uses the earlier rows of a batch as memories: every split
        must be consecutive chunks of one text, a `ByteSource`."""
        try:
            from seqkit.data import ByteSource
        except ImportError as e:  # the data pipelines are an optional part of an install
            raise RecipeError(f"trainer.objective=trime_long needs seqkit.data.ByteSource: {e}") from None
        for split in ("train", "val", "test"):
            source = sources[split]
            inner = source.source if isinstance(source, MemoryCache) else source
            if not isinstance(inner, ByteSource):
                raise RecipeError(
                    f"trainer.objective=trime_long needs each batch to be consecutive segments of one text, "
                    f"a byte corpus (ByteSource: data.name=pytext, enwik8 or text8); the {split} split of "
                    f"data.name={self.data.name} is {type(inner).__name__}: use a byte corpus, or "
                    "--set trainer.objective=trime_local"
                )


def _make_with_state(cls: type, what: str, **kwargs: Any) -> tuple[eqx.Module, eqx.nn.State]:
    """`eqx.nn.make_with_state(cls)(**kwargs)`, a constructor's objection as a
    one-line `RecipeError` prefixed with `what`."""
    try:
        return eqx.nn.make_with_state(cls)(**kwargs)
    except (RecipeError, jax.errors.ConcretizationTypeError):
        raise
    except (ValueError, TypeError) as e:
        raise RecipeError(f"{what}: {_first_line(e)}") from e


def init_key(seed: int) -> PRNGKeyArray:
    """The model-initialization key of a run with this seed."""
    return jr.fold_in(jr.key(seed), 0)


def step_key(seed: int, step: int) -> PRNGKeyArray:
    """The dropout key of optimizer step `step`: a pure function of (seed, step)."""
    return jr.fold_in(jr.fold_in(jr.key(seed), 1), step)


# --- overrides, type checks and JSON ------------------------------------------------


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _is_mixer_type(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, MixerConfig)


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(tp))
    if origin is Literal:
        return "one of " + ", ".join(map(str, typing.get_args(tp)))
    if origin is list:
        (elt,) = typing.get_args(tp)
        return f"a comma-separated list of {_describe(elt)}"
    if tp is type(None):
        return "none"
    if _is_mixer_type(tp):
        return "a mixer kind"
    return {bool: "a bool (true/false)", int: "an int", float: "a float", str: "a string"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def _parse_kind(text: str, where: str) -> MixerConfig:
    try:
        return MixerConfig.from_kind(text.strip())
    except ValueError as e:
        raise RecipeError(f"{where}: {_first_line(e)}") from None


def _parse(text: str, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if type(None) in args and text.strip().lower() in ("none", "null"):
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _parse(text, a, where)
            except RecipeError as e:
                errors.append(str(e))
        raise RecipeError(errors[0] if errors else f"{where}: cannot parse {text!r}")
    if origin is list:
        (elt,) = typing.get_args(tp)
        parts = [p.strip() for p in text.split(",")] if text.strip() else []
        if _is_mixer_type(elt):
            return [_parse_kind(p, f"{where}.{i}") for i, p in enumerate(parts)]
        return [_parse(p, elt, f"{where}.{i}") for i, p in enumerate(parts)]
    if origin is Literal:
        choices = typing.get_args(tp)
        if text not in choices:
            raise RecipeError(f"{where}: expected one of {', '.join(map(str, choices))}; got {text!r}")
        return text
    if tp is bool:
        low = text.strip().lower()
        if low in ("true", "1", "yes", "on"):
            return True
        if low in ("false", "0", "no", "off"):
            return False
        raise RecipeError(f"{where}: expected a bool (true/false), got {text!r}")
    if tp is int:
        try:
            return int(text)
        except ValueError:
            try:
                f = float(text)  # accept 1e4 for step counts
            except ValueError:
                f = None
            if f is not None and f.is_integer():
                return int(f)
            raise RecipeError(f"{where}: expected an int, got {text!r}") from None
    if tp is float:
        try:
            return float(text)
        except ValueError:
            raise RecipeError(f"{where}: expected a float, got {text!r}") from None
    if tp is str:
        return text
    raise RecipeError(f"{where}: cannot set a value of type {tp}")


def override(recipe: Recipe, assignments: Sequence[str]) -> Recipe:
    """A copy of `recipe` with `key=value` edits applied (`model.n_layers=4`).

    Values are parsed by the field's type (int, float, bool, str, a `Literal`'s
    choices, `none` for optional fields, comma-separated lists). Mixers are edited
    by index and replaced by kind:

    - `model.mixers.0.state_size=32`: an option of the first mixer;
    - `model.mixers.1=local`: replace (or, at the end, append) an entry by the
      defaults of a kind;
    - `model.mixers=s4,local`: the whole list, each kind at its defaults;
    - `model.pattern=0,1,1,1`: the mixer index of every layer (`none`: one
      mixer for all layers, or one per layer).

    An unknown key, kind or option raises `RecipeError` naming the accepted
    ones; a value that does not parse names the expected type. Whether mixers,
    pattern and `n_layers` fit together is checked by `Recipe.validate`, after
    every edit (their order does not matter).
    """
    for assignment in assignments:
        if "=" not in assignment:
            raise RecipeError(f"expected key=value, got {assignment!r}")
        path, text = assignment.split("=", 1)
        recipe = _set(recipe, path.strip().split("."), text, prefix="")
    return recipe


def _set(node: Any, keys: list[str], text: str, *, prefix: str) -> Any:
    hints = typing.get_type_hints(type(node))
    names = [f.name for f in dataclasses.fields(node)]
    key = keys[0]
    where = prefix + key
    if key not in names:
        if isinstance(node, MixerConfig):
            hint = f"; to change the kind use {prefix[:-1]}=KIND" if key == "kind" else ""
            raise RecipeError(
                f"unknown option {where!r} for mixer kind {node.kind!r}; "
                f"expected one of: {', '.join(names) or '(none)'}{hint}"
            )
        level = f"under {prefix[:-1]!r}" if prefix else "at the top level"
        raise RecipeError(f"unknown key {where!r}; accepted {level}: {', '.join(names)}")
    value = getattr(node, key)
    tp = hints[key]
    if dataclasses.is_dataclass(value) and not isinstance(value, MixerConfig):
        if len(keys) == 1:
            sub = ", ".join(f.name for f in dataclasses.fields(value))
            raise RecipeError(f"{where!r} is a section; set one of its keys: {where}.KEY ({sub})")
        new = _set(value, keys[1:], text, prefix=where + ".")
    elif len(keys) > 1 and typing.get_origin(tp) is list and _is_mixer_type(typing.get_args(tp)[0]):
        new = _set_item(value, keys[1:], text, prefix=where + ".")
    else:
        if len(keys) > 1:
            raise RecipeError(f"{where!r} is a value, not a section; use {where}=VALUE")
        new = _parse(text, tp, where)
    return dataclasses.replace(node, **{key: new})


def _set_item(items: list[MixerConfig], keys: list[str], text: str, *, prefix: str) -> list[MixerConfig]:
    where = prefix + keys[0]
    n = len(items)
    last = n if len(keys) == 1 else n - 1  # assigning a kind one past the end appends
    try:
        i = int(keys[0])
    except ValueError:
        i = -1
    if not 0 <= i <= last:
        has = f"{prefix[:-1]} has {n} {'entry' if n == 1 else 'entries'}"
        append = f", or {n} to append a mixer" if len(keys) == 1 else ""
        raise RecipeError(f"{where}: expected an index in 0..{n - 1}{append} ({has}), got {keys[0]!r}")
    items = list(items)
    if len(keys) == 1:
        entry = _parse_kind(text, where)
    else:
        entry = _set(items[i], keys[1:], text, prefix=where + ".")
    if i == n:
        items.append(entry)
    else:
        items[i] = entry
    return items


def _check(value: Any, tp: Any, where: str) -> None:
    """A `RecipeError` unless `value` has type `tp` (recursing into dataclasses and lists)."""
    name = where or "recipe"
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for a in typing.get_args(tp):
            try:
                return _check(value, a, where)
            except RecipeError:
                pass
        raise RecipeError(f"{name}: expected {_describe(tp)}, got {value!r}")
    if origin is list:
        if not isinstance(value, list):
            raise RecipeError(f"{name}: expected a list, got {value!r}")
        (elt,) = typing.get_args(tp)
        for i, v in enumerate(value):
            _check(v, elt, f"{where}.{i}")
        return
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise RecipeError(f"{name}: expected {_describe(tp)}; got {value!r}")
        return
    if tp is type(None):
        ok = value is None
    elif tp is bool:
        ok = isinstance(value, bool)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif tp is str:
        ok = isinstance(value, str)
    elif isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(value, tp):
            raise RecipeError(f"{name}: expected {_describe(tp)}, got {value!r}")
        hints = typing.get_type_hints(type(value))
        for f in dataclasses.fields(value):
            key = f"{where}.{f.name}" if where else f.name
            _check(getattr(value, f.name), hints[f.name], key)
            _check_bounds(getattr(value, f.name), f.metadata.get("bounds", {}), key, hints[f.name])
        return
    else:
        ok = True  # a type this checker does not know: the constructors check it
    if not ok:
        raise RecipeError(f"{name}: expected {_describe(tp)}, got {value!r}")


def _to_data(x: Any) -> Any:
    if isinstance(x, MixerConfig):
        return {"kind": x.kind, **{k: _to_data(v) for k, v in x.options().items()}}
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return {f.name: _to_data(getattr(x, f.name)) for f in dataclasses.fields(x)}
    if isinstance(x, (list, tuple)):
        return [_to_data(v) for v in x]
    return x


def _from_data(data: Any, tp: Any, where: str) -> Any:
    name = where or "recipe"
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        if data is None:
            return None
        options = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(options) != 1:
            return data
        tp = options[0]
        origin = typing.get_origin(tp)
    if origin is list and isinstance(data, list):
        (elt,) = typing.get_args(tp)
        return [_from_data(v, elt, f"{where}.{i}") for i, v in enumerate(data)]
    if not (isinstance(tp, type) and dataclasses.is_dataclass(tp)):
        return data
    if not isinstance(data, Mapping):
        raise RecipeError(f"{name}: expected a mapping of {tp.__name__} fields, got {data!r}")
    data = dict(data)
    cls = tp
    if _is_mixer_type(tp):
        if "kind" not in data:
            raise RecipeError(f"{name}: expected a 'kind' (one of: {', '.join(MixerConfig.kinds())})")
        try:
            cls = MixerConfig.config_class(data.pop("kind"))
        except ValueError as e:
            raise RecipeError(f"{name}: {_first_line(e)}") from None
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise RecipeError(f"unknown keys {unknown} for {cls.__name__} ({name}); accepted: {', '.join(names)}")
    prefix = f"{where}." if where else ""
    kwargs = {k: _from_data(v, hints[k], prefix + k) for k, v in data.items()}
    for k, v in kwargs.items():
        _check(v, hints[k], prefix + k)
    return cls(**kwargs)


def recipe_to_dict(recipe: Recipe) -> dict[str, Any]:
    """The recipe as plain JSON-ready data (each mixer config carries its `"kind"`)."""
    return _to_data(recipe)


def config_differences(stored: Any, new: Any, *, limit: int = 3) -> str:
    """Where two configurations (as `recipe_to_dict` writes them) differ, as
    `"model.n_layers: 4 there, 2 here"`, the first `limit` keys in order."""
    found: list[str] = []

    def walk(a: Any, b: Any, path: str) -> None:
        if len(found) >= limit or a == b:
            return
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            for k in [*a, *(k for k in b if k not in a)]:
                walk(a.get(k, "(none)"), b.get(k, "(none)"), f"{path}.{k}" if path else str(k))
        elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
            for i, (x, y) in enumerate(zip(a, b, strict=True)):
                walk(x, y, f"{path}.{i}")
        else:
            found.append(f"{path or 'configuration'}: {a!r} there, {b!r} here")

    walk(stored, new, "")
    return "; ".join(found)


def recipe_from_dict(data: Mapping[str, Any]) -> Recipe:
    """Inverse of `recipe_to_dict`; unknown keys, kinds and ill-typed values are a
    `RecipeError`."""
    recipe = _from_data(data, Recipe, "")
    _check(recipe, Recipe, "")
    return recipe
