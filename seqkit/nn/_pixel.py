"""PIXEL's pretraining objective: reconstruct the pixels of masked spans of patches
(Rust, Lotz, Bugliarello, Salesky, de Lhoneux and Elliott, "Language Modelling
with Pixels", ICLR 2023), after the masked autoencoder of He et al. ("Masked
Autoencoders Are Scalable Vision Learners", CVPR 2022).

A text is a sequence of `N` patches `x_j ∈ R^{P²}` (`seqkit.data.render_patches`),
of which the first `n` are real (the rest padding). PIXEL hides a set `M` of about
`R = 25%` of the real patches, in spans of at most `S = 6` consecutive patches,
encodes the rest, and predicts every pixel of the hidden patches; the loss is the
mean squared error over the hidden patches against each patch's normalized pixels
(MAE's `norm_pix_loss`):

`x̂_j = (x_j − μ_j) / √(σ_j² + 10⁻⁶)`,
`L = 1/(|M| P²) Σ_{j ∈ M} ‖f(x)_j − x̂_j‖²`,

`μ_j` and `σ_j²` the mean and variance of patch `j`'s `P²` pixels.

seqkit's model ([`seqkit.nn.PixelPretrainer`][]) differs from PIXEL's in where the
hidden patches go: PIXEL's ViT-MAE encoder (768 wide, 12 layers: ViT-Base) reads
only the visible patches and a lightweight decoder (512 wide, 8 layers) inserts
learned mask tokens and predicts pixels; here a hidden patch is replaced by a
learned mask patch and one `SequenceModel` reads all `N` positions and predicts
`P²` pixels at each (a linear head), as BEiT and SimMIM place their mask tokens.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Bool, Float, PRNGKeyArray

from ._sequence_model import SequenceModel

NORM_EPS = 1e-6  # MAE's norm_pix_loss: var + 1e-6


def span_mask(
    key: PRNGKeyArray,
    real: Bool[Array, " N"],
    *,
    ratio: float = 0.25,
    max_span: int = 6,
    tries: int | None = None,
) -> Bool[Array, " N"]:
    """Which patches to hide: spans of at most `max_span` consecutive real patches,
    about `ratio` of them (PIXEL's span masking, Rust et al., ICLR 2023: `R = 0.25`,
    `S = 6`).

    `real` marks the real patches, a prefix `j < n` (the rest padding; checked at
    run time, with `equinox.error_if`). The sampling, seqkit's own:

    1. The budget `K = ⌊R·n + 1/2⌋`.
    2. For `t = 1..T` (`T = tries`, default `N`), in order: a length
       `s_t ~ Uniform{1, …, S}` and a start `a_t ~ Uniform{0, …, n−1}` give the span
       `A_t = {a_t, …, min(a_t + s_t, n) − 1}`. It is added to the hidden set `M`
       when `|M| + |A_t| ≤ K` and no patch of `A_t` is hidden or next to a hidden
       one (`a_t − 1` and `min(a_t + s_t, n)` included); otherwise it is skipped.

    So `M` holds only real patches, `|M| ≤ K`, and every run of consecutive hidden
    patches is one span, at most `S` long, with a visible patch on each side (or
    the sequence's edge). `|M|` can fall short of `K` when no drawn span fits; over
    many keys the hidden fraction is a little under `R` (measured in seqkit's tests).
    The draws use `N` and `T` only (static), so this works under `jit` and `vmap`.

    **Arguments:** `key`; `real`, bool `(N,)`; `ratio`, `R` in `[0, 1]`;
    `max_span`, `S ≥ 1`; `tries`, `T`.

    **Returns:** bool `(N,)`, True at the hidden patches.
    """
    real = jnp.asarray(real)
    if real.ndim != 1 or real.dtype != jnp.bool_:
        raise ValueError(f"expected real as a bool mask of shape (N,), got {real.dtype} {real.shape}")
    if not 0.0 <= float(ratio) <= 1.0:
        raise ValueError(f"expected ratio in [0, 1], got {ratio}")
    if isinstance(max_span, bool) or not isinstance(max_span, int) or max_span < 1:
        raise ValueError(f"expected max_span a positive integer, got {max_span!r}")
    (N,) = real.shape
    # the spans are drawn over positions 0..n-1: real patches elsewhere would never
    # be hidden (padding in front: nothing hidden at all)
    real = eqx.error_if(
        real,
        jnp.any(real[1:] & ~real[:-1]),
        "span_mask: expected the real patches as a prefix (padding only after the text, as "
        "seqkit's renderer makes it), got a real patch after a padding one",
    )
    T = N if tries is None else int(tries)
    n = jnp.sum(real.astype(jnp.int32))
    budget = jnp.floor(n.astype(jnp.float32) * float(ratio) + 0.5).astype(jnp.int32)
    k_len, k_start = jr.split(key)
    lengths = jr.randint(k_len, (T,), 1, max_span + 1)
    starts = jnp.floor(jr.uniform(k_start, (T,)) * n.astype(jnp.float32)).astype(jnp.int32)
    pos = jnp.arange(N)

    def add(hidden, draw):
        a, s = draw
        end = jnp.minimum(a + s, n)
        span = (pos >= a) & (pos < end)
        near = (pos >= a - 1) & (pos <= end)
        fits = (jnp.sum(hidden) + jnp.sum(span) <= budget) & ~jnp.any(hidden & near)
        return jnp.where(fits & (n > 0), hidden | span, hidden), None

    hidden, _ = jax.lax.scan(add, jnp.zeros((N,), bool), (starts, lengths))
    return hidden & real


def normalize_patches(target: Float[Array, "*n D"], eps: float = NORM_EPS) -> Float[Array, "*n D"]:
    """Each patch's pixels normalized, `(x_j − μ_j) / √(σ_j² + eps)`, with `μ_j` the
    mean and `σ_j²` the unbiased variance (divisor `D − 1`) of its `D = P²` pixels,
    as MAE's `norm_pix_loss` computes them (He et al., CVPR 2022)."""
    target = jnp.asarray(target)
    d = target.shape[-1]
    if d < 2:
        raise ValueError(f"normalizing a patch needs at least 2 pixels, got patches of {d}")
    mean = jnp.mean(target, axis=-1, keepdims=True)
    var = jnp.sum((target - mean) ** 2, axis=-1, keepdims=True) / (d - 1)
    return (target - mean) / jnp.sqrt(var + eps)


def _patch_errors(pred, target, hidden, real, normalize):
    pred, target = jnp.asarray(pred), jnp.asarray(target)
    if pred.shape != target.shape or pred.ndim < 2:
        raise ValueError(
            f"expected pred and target of one shape (..., N, P·P), got {pred.shape} and {target.shape}"
        )
    for name, m in (("hidden", hidden), ("real", real)):
        if jnp.shape(m) != pred.shape[:-1]:
            raise ValueError(
                f"expected {name} of shape {pred.shape[:-1]} (one per patch), got {jnp.shape(m)}"
            )
    if normalize:
        target = normalize_patches(target)
    err = jnp.mean((pred - target) ** 2, axis=-1)
    weight = (jnp.asarray(hidden) & jnp.asarray(real)).astype(err.dtype)
    return jnp.sum(err * weight), jnp.sum(weight)


def masked_patch_loss(
    pred: Float[Array, "*batch N D"],
    target: Float[Array, "*batch N D"],
    hidden: Bool[Array, "*batch N"],
    real: Bool[Array, "*batch N"],
    *,
    normalize: bool = True,
) -> Float[Array, ""]:
    """PIXEL's and MAE's reconstruction loss (Rust et al., ICLR 2023; He et al.,
    CVPR 2022): the mean squared pixel error over the hidden real patches,

    `L = Σ_j m_j · (1/D) ‖pred_j − x̂_j‖² / max(Σ_j m_j, 1)`,   `m_j = hidden_j ∧ real_j`,

    with `x̂_j = normalize_patches(target)_j` when `normalize` (MAE's
    `norm_pix_loss`), else `target_j`. Leading batch axes are summed over too
    (the mean over every hidden patch of the batch, as MAE averages). No hidden
    patch gives 0.

    **Arguments:** `pred`, `target`: `(..., N, D)`; `hidden`, `real`: bool `(..., N)`.

    **Returns:** a scalar.
    """
    total, count = _patch_errors(pred, target, hidden, real, normalize)
    return total / jnp.maximum(count, 1.0)


class PixelPretrainer(eqx.Module):
    """A masked-patch reconstruction model for PIXEL's pretraining (Rust et al.,
    ICLR 2023): hidden patches are replaced by a learned mask patch `m ∈ R^{D}`,
    an `encoder` ([`seqkit.nn.SequenceModel`][] reading `(N, D)` patches) gives
    every position's features `h_j` (its pooling skipped, its head unused), and a
    linear decoder predicts every patch's pixels,

    `h = f([x_j if j ∉ M else m]_{j<N})`,   `pred_j = W h_j + b ∈ R^{D}`.

    With a class token (`pool="cls"`) its features are computed and dropped, so
    the encoder is exactly a ViT classifier's backbone: after pretraining,
    `model.encoder` with a new head fine-tunes on a task (a recipe does this with
    `--set model.init_from=RUN_DIR`). Padding patches are masked out of the
    encoder (its `mask`).

    Call as `model(patches, hidden, real, state, key=key) -> (pred, state)` on one
    sequence, or use [`seqkit.nn.pixel_pretraining_loss`][] on a batch.
    """

    encoder: SequenceModel
    decoder: eqx.nn.Linear
    mask_patch: Float[Array, " D"]

    def __init__(self, encoder: SequenceModel, *, key: PRNGKeyArray):
        """**Arguments:** `encoder`, a `SequenceModel` built with `d_in = D`
        (`P²` pixels per patch: 256 for PIXEL's 16 × 16 patches) and position
        embeddings (patches are otherwise unordered to attention); `key`."""
        if not isinstance(encoder, SequenceModel) or not isinstance(encoder.encoder, eqx.nn.Linear):
            raise ValueError(
                "expected a SequenceModel reading real-valued patches (built with d_in = pixels per "
                f"patch), got {type(encoder).__name__}"
                + (" with a token embedding" if isinstance(encoder, SequenceModel) else "")
            )
        patch_dim = encoder.encoder.in_features
        k_dec, k_mask = jr.split(key)
        self.encoder = encoder
        self.decoder = eqx.nn.Linear(encoder.d_model, patch_dim, key=k_dec)
        self.mask_patch = 0.02 * jr.normal(k_mask, (patch_dim,), encoder.encoder.weight.dtype)

    @property
    def patch_dim(self) -> int:
        return self.encoder.encoder.in_features

    def __call__(
        self,
        patches: Float[Array, "N D"],
        hidden: Bool[Array, " N"],
        real: Bool[Array, " N"],
        state: eqx.nn.State,
        *,
        key: PRNGKeyArray | None = None,
    ) -> tuple[Float[Array, "N D"], eqx.nn.State]:
        x = jnp.where(hidden[:, None], self.mask_patch.astype(patches.dtype), patches)
        h, state = self.encoder.features(x, state, mask=real, key=key, pooled=False)
        if self.encoder.cls_token is not None:
            h = h[1:]
        return jax.vmap(self.decoder)(h), state


def pixel_pretraining_loss(
    model: PixelPretrainer,
    state: eqx.nn.State,
    patches: Float[Array, "B N D"],
    real: Bool[Array, "B N"],
    key: PRNGKeyArray,
    *,
    ratio: float = 0.25,
    max_span: int = 6,
    normalize: bool = True,
) -> tuple[Float[Array, ""], eqx.nn.State]:
    """One batch of PIXEL's pretraining objective (Rust et al., ICLR 2023): for
    each sequence `b`, hide spans `M_b = span_mask(k_b, real_b, ratio, max_span)`,
    predict with `model`, and score
    `L = Σ_b Σ_{j ∈ M_b} (1/D) ‖pred_bj − x̂_bj‖² / Σ_b |M_b|`
    ([`seqkit.nn.masked_patch_loss`][] over the whole batch).

    `key` is split into one mask key and one dropout key per sequence. Differentiate
    with `eqx.filter_value_and_grad(..., has_aux=True)`.

    **Arguments:** `model`; `state`; `patches`, float `(B, N, D)`; `real`, bool
    `(B, N)`, each row a prefix of real patches (padding after the text, as the
    renderer makes it); `key`; `ratio`, `max_span` as for [`seqkit.nn.span_mask`][];
    `normalize` as for `masked_patch_loss`.

    **Returns:** `(loss, state)`.
    """
    pred, hidden, state = reconstruct_masked(model, state, patches, real, key, ratio=ratio, max_span=max_span)
    return masked_patch_loss(
        pred, jnp.asarray(patches), hidden, jnp.asarray(real), normalize=normalize
    ), state


def reconstruct_masked(
    model: PixelPretrainer,
    state: eqx.nn.State,
    patches: Float[Array, "B N D"],
    real: Bool[Array, "B N"],
    key: PRNGKeyArray,
    *,
    ratio: float = 0.25,
    max_span: int = 6,
    dropout: bool = True,
) -> tuple[Float[Array, "B N D"], Bool[Array, "B N"], eqx.nn.State]:
    """The predictions of [`seqkit.nn.pixel_pretraining_loss`][] before the loss:
    `key` split into one mask key and one dropout key per sequence (no dropout
    keys with `dropout=False`, for inference), spans hidden by
    [`seqkit.nn.span_mask`][], and the model run over the batch (vmapped,
    `axis_name="batch"`).

    **Returns:** `(pred, hidden, state)`: `(B, N, D)`, bool `(B, N)`, the state.
    """
    patches, real = jnp.asarray(patches), jnp.asarray(real)
    if patches.ndim != 3 or real.shape != patches.shape[:2]:
        raise ValueError(
            f"expected a batch: patches (B, N, D) and real (B, N), got {patches.shape} and {real.shape}"
        )
    b = patches.shape[0]
    k_mask, k_drop = jr.split(key)
    hidden = jax.vmap(lambda k, r: span_mask(k, r, ratio=ratio, max_span=max_span))(jr.split(k_mask, b), real)
    keys = jr.split(k_drop, b) if dropout else None

    def one(x, h, r, s, k):
        return model(x, h, r, s, key=k)

    pred, state = jax.vmap(
        one, axis_name="batch", in_axes=(0, 0, 0, None, None if keys is None else 0), out_axes=(0, None)
    )(patches, hidden, real, state, keys)
    return pred, hidden, state
