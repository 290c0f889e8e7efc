"""Typed mixer configurations: how a recipe names, edits and builds the mixer of a layer."""

import abc
import dataclasses
from typing import Any, ClassVar

from jaxtyping import PRNGKeyArray

from seqkit._mixer import AbstractMixer

# kind -> config class; filled by `MixerConfig.__init_subclass__`.
_KINDS: dict[str, type["MixerConfig"]] = {}


@dataclasses.dataclass
class MixerConfig(abc.ABC):
    """The options of one mixer family as plain, typed data, and how to build the mixer.

    A family defines a subclass beside its module: a dataclass whose fields are
    the module's options (typed, `Literal[...]` for choices, named as the module's
    keyword arguments), a `kind` (the name recipes, `--set` and `config.json` use)
    and `build`. Subclasses register themselves by `kind` when they are defined,
    so a new family reaches recipes, the CLI and the optimizer (through the
    module's `ssm_parameters()`) without editing any of them.

    ```python
    @dataclasses.dataclass
    class MyMixerConfig(MixerConfig):
        kind: ClassVar[str] = "mine"
        width: int = 4

        def build(self, d_model, *, max_length, key):
            return MyMixer(d_model, width=self.width, key=key)

    MixerConfig.from_kind("mine", width=8)  # MyMixerConfig(width=8)
    ```

    A subclass with no `kind` of its own (a shared base of several families) is
    not registered.
    """

    kind: ClassVar[str]

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "kind" not in cls.__dict__:
            return
        kind = cls.__dict__["kind"]
        if not isinstance(kind, str) or not kind or "," in kind or "=" in kind or "." in kind:
            raise TypeError(
                f"{cls.__name__}.kind must be a non-empty name without ',', '=' or '.', got {kind!r}"
            )
        other = _KINDS.get(kind)
        if other is not None and (other.__module__, other.__qualname__) != (cls.__module__, cls.__qualname__):
            raise TypeError(
                f"mixer kind {kind!r} of {cls.__module__}.{cls.__qualname__} is already taken by "
                f"{other.__module__}.{other.__qualname__}"
            )
        _KINDS[kind] = cls

    @abc.abstractmethod
    def build(self, d_model: int, *, max_length: int, key: PRNGKeyArray) -> AbstractMixer:
        """The mixer these options describe.

        **Arguments:**

        - `d_model`: the model width (the mixer maps `(L, d_model) → (L, d_model)`).
        - `max_length`: the longest sequence the model will see (S4's `l_max`,
          Linformer's and Synthesizer's `max_len`, Mega's relative-position span).
        - `key`: PRNG key.

        **Returns:** a [`seqkit.nn.AbstractMixer`][].
        """

    def options(self) -> dict[str, Any]:
        """The fields and their values, in declaration order (no `kind`)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @staticmethod
    def kinds() -> tuple[str, ...]:
        """Every registered kind, sorted."""
        return tuple(sorted(_KINDS))

    @staticmethod
    def config_class(kind: str) -> type["MixerConfig"]:
        """The config class registered as `kind`; a `ValueError` names the kinds otherwise."""
        if kind not in _KINDS:
            raise ValueError(
                f"unknown mixer kind {kind!r}; expected one of: {', '.join(MixerConfig.kinds())}"
            )
        return _KINDS[kind]

    @staticmethod
    def from_kind(kind: str, **options: Any) -> "MixerConfig":
        """The config of `kind` with `options` (the rest at their defaults)."""
        cls = MixerConfig.config_class(kind)
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = [k for k in options if k not in names]
        if unknown:
            raise ValueError(
                f"unknown option {unknown[0]!r} for mixer kind {kind!r}; "
                f"expected one of: {', '.join(names) or '(none)'}"
            )
        return cls(**options)
