"""The one protocol every sequence mixer implements, and the parameter groups it declares.

Lives below `seqkit.ssm`, `seqkit.attention` and `seqkit.nn` so each of them can
subclass it; the public names are `seqkit.nn.AbstractMixer` and
`seqkit.nn.AbstractRecurrentMixer`.
"""

import abc
import dataclasses

import equinox as eqx
import jax
from jaxtyping import Array, Bool, Float, PRNGKeyArray, PyTree


class AbstractMixer(eqx.Module):
    """A layer that mixes information along the sequence: `(L, d_model) → (L, d_model)`.

    One example at a time; batch with `jax.vmap`. Every SSM core and layer, every
    attention variant, GSS and Mega implement it, so any of them can sit in a
    [`seqkit.nn.ResidualBlock`][] or a [`seqkit.nn.SequenceModel`][].

    **Mask semantics** (the same for every mixer): `mask` is a bool `(L,)` array,
    True at real positions. Padded positions never influence real ones, in either
    direction: convolutions see zeros there, attention never attends to them.
    The outputs *at* padded positions are unspecified.

    **Dropout** follows Equinox's convention: active unless the module is in
    inference mode (`eqx.nn.inference_mode`), and then it needs `key`.

    **Parameter groups**: [`seqkit.nn.AbstractMixer.ssm_parameters`][] names the
    leaves that train at the SSM learning rate with no weight decay; the
    optimizer asks the modules and never matches field names.
    """

    d_model: eqx.AbstractVar[int]

    @abc.abstractmethod
    def __call__(
        self,
        x: Float[Array, "L d_model"],
        *,
        mask: Bool[Array, " L"] | None = None,
        key: PRNGKeyArray | None = None,
    ) -> Float[Array, "L d_model"]:
        """**Arguments:**

        - `x`: `(L, d_model)`, one example.
        - `mask`: optional bool `(L,)`, True at real positions.
        - `key`: PRNG key for dropout (needed only while dropout is active).

        **Returns:** `(L, d_model)`.
        """

    @property
    def length_dependent(self) -> bool:
        """Whether an output at position `t` depends on the sequence's length `L`
        (the parallel call's, or the `L` given to `init_state`), not only on the
        inputs: True for DSS's softmax kernel, normalized over `L`. Such a mixer can
        be causal in its inputs, and trained as a language model at a fixed length,
        but its outputs on a prefix are not the first rows of its outputs on the
        whole sequence, so [`seqkit.nn.generate`][] refuses it. Mixers that hold
        others report theirs."""
        return any(m.length_dependent for m in _sub_mixers(self))

    def ssm_parameters(self) -> tuple:
        """The leaves of this module that are "SSM parameters": the optimizer trains
        them at their own learning rate and weight decay (`optimizer.ssm_lr`,
        `ssm_weight_decay`), smaller and none in the S4, S4D and DSS papers; Mega's
        code trains its EMA's with the rest, which its recipes set.

        Returns the fields themselves (attribute accesses, no arithmetic), so the
        optimizer can locate them in any pytree of the model's structure. The default
        gathers them from the mixers nested in this one; SSM cores override it.
        """
        return tuple(p for m in _sub_mixers(self) for p in m.ssm_parameters())


class AbstractRecurrentMixer(AbstractMixer):
    """A mixer that also runs as a recurrence, one position at a time.

    `init_state(L)` makes the state and `step(x_t, state)` advances it; stepping
    over a sequence gives the same outputs as the parallel call. Classes that have
    both a causal and a bidirectional form raise a `ValueError` from `init_state`
    in their bidirectional form.
    """

    @abc.abstractmethod
    def init_state(self, L: int | None = None) -> PyTree:
        """The state before the first position.

        **Arguments:** `L`, the longest sequence that will be stepped through, for
        mixers whose state or system depends on it (a key/value cache, DSS-softmax);
        `None` where it does not matter.
        """

    @abc.abstractmethod
    def step(
        self, x_t: Float[Array, " d_model"], state: PyTree, *, key: PRNGKeyArray | None = None
    ) -> tuple[Float[Array, " d_model"], PyTree]:
        """One position: **Returns** `(y_t, state)`."""


def outermost(tree: PyTree, types: type | tuple[type, ...]) -> list:
    """The nodes of `tree` that are instances of `types` and not held by another
    such node, in tree order."""
    is_one = lambda n: isinstance(n, types)  # noqa: E731
    return [n for n in jax.tree.leaves(tree, is_leaf=is_one) if is_one(n)]


def _mixers_in(tree: PyTree) -> list[AbstractMixer]:
    """The outermost mixers in `tree` (those not held by another mixer in it)."""
    return outermost(tree, AbstractMixer)


def _sub_mixers(module: eqx.Module) -> list[AbstractMixer]:
    """The outermost mixers held in `module`'s fields."""
    return _mixers_in([getattr(module, f.name) for f in dataclasses.fields(module)])


def ssm_parameter_labels(tree: PyTree) -> PyTree[str]:
    """Label every leaf of `tree` `"ssm"` or `"default"`.

    `tree` is a model, or the array part of one that optax sees
    (`eqx.filter(model, eqx.is_inexact_array)`); the `"ssm"` leaves are those that the mixers in it declare
    through `ssm_parameters()`.
    """
    labels = jax.tree.map(lambda _: "default", tree)
    if not _mixers_in(labels):
        return labels

    def where(t):
        return [p for m in _mixers_in(t) for p in m.ssm_parameters() if p is not None]

    if not where(labels):
        return labels
    return eqx.tree_at(where, labels, replace_fn=lambda _: "ssm")
