"""`make_source`: every dataset by name, one random-access source per split."""

from __future__ import annotations

import os

from seqkit._paths import expand_path

from ._aan import AanSource
from ._bytes import ByteSource
from ._cifar import CifarSource
from ._files import find_cache
from ._imdb import ImdbSource
from ._listops import (
    ListOpsCacheNotFoundError,
    ListOpsCacheSource,
    ListOpsConfig,
    ListOpsSource,
    find_listops_cache,
)
from ._lra_release import (
    ListOpsReleaseSource,
    PathfinderReleaseSource,
    listops_release_advice,
    listops_release_dir,
    pathfinder_release_advice,
    pathfinder_release_dir,
)
from ._patches import PatchSource, check_patch_size
from ._pathfinder import (
    METADATA,
    PATHFINDER_PRESETS,
    PathfinderCacheNotFoundError,
    PathfinderCacheSource,
    PathfinderSource,
    check_pathfinder_cache,
    is_pathfinder_cache,
    pathfinder_config,
    read_pathfinder_metadata,
)
from ._render import MAX_PATCHES, RenderedTextSource, decode_utf8

DATASETS: dict[str, str] = {
    "pathfinder32": "Pathfinder 32x32 (L=1024): generated, or a cache, or the LRA files; 2 classes",
    "pathfinder64": "Pathfinder 64x64 (L=4096): generated, or a cache, or the LRA files; 2 classes",
    "pathx": "Path-X 128x128 (L=16384): generated, or a cache, or the LRA files; 2 classes",
    "pathfinder256": "Pathfinder 256x256 (L=65536): generated, or a cache, or the LRA files; 2 classes",
    "scifar": "sequential CIFAR-10, RGB (L=1024, 3 channels, normalized); needs the CIFAR-10 archive",
    "cifar_gray": "LRA Image: grayscale CIFAR-10 (L=1024, tokens 0..255 or a scalar); needs the archive",
    "imdb": "LRA Text: IMDb reviews as bytes (L=4096, with a mask); needs aclImdb_v1.tar.gz; 2 classes",
    "aan": "LRA Retrieval: AAN paper pairs as bytes (2 x L=4000, with masks); needs LRA's TSVs; 2 classes",
    "listops": "LRA ListOps (tokens, L=2048, with a mask), generated or read from a cache; 10 classes",
    "pytext": "this Python's stdlib source as bytes (LM, next byte, L=512); no download; 256 tokens",
    "enwik8": "first 10^8 bytes of English Wikipedia (LM, next byte, L=512); needs enwik8(.zip); 256 tokens",
    "text8": "10^8 bytes of lowercase Wikipedia text (LM, next byte, L=512); needs text8(.zip); 256 tokens",
}

BYTE_CORPORA = ("pytext", "enwik8", "text8")

_OPTIONS = {
    **{name: ("contour_length", "as_tokens", "style", "patch_size") for name in PATHFINDER_PRESETS},
    "scifar": ("patch_size",),
    "cifar_gray": ("as_tokens", "patch_size"),
    "imdb": ("max_length", "patch_size"),
    "aan": ("max_length",),
    "listops": ("max_length",),
    "pytext": ("max_length", "patch_size"),
    "enwik8": ("max_length", "patch_size"),
    "text8": ("max_length", "patch_size"),
}


def _pathfinder_write_advice(data_dir: str, name: str, contour_length: int, style: str) -> str:
    """How to get a `name` cache of this level and style into `data_dir` (or do without one)."""
    level = f" --contour-length {contour_length}" if contour_length != 14 else ""
    level += f" --style {style}" if style != "lra" else ""
    return (
        f"write one with `seqkit data pathfinder --preset {name}{level} --size N --out "
        f"{os.path.join(data_dir, name)}`, or set no data directory (`--set data.data_dir=none`, "
        f"data_dir=None) to generate examples on the fly"
    )


def _pathfinder_cache_dir(data_dir: str, name: str, contour_length: int, style: str = "lra") -> str:
    found = find_cache(data_dir, name, METADATA, lambda meta: is_pathfinder_cache(meta, name))
    if found is not None:
        return found
    raise PathfinderCacheNotFoundError(
        f"no {name} cache in {data_dir} (neither {os.path.join(data_dir, METADATA)} nor "
        f"{os.path.join(data_dir, name, METADATA)} describes one); "
        f"{_pathfinder_write_advice(data_dir, name, contour_length, style)}"
    )


def _pathfinder_release_dir(
    data_dir: str, name: str, contour_length: int, style: str, no_cache: PathfinderCacheNotFoundError
) -> str:
    """The LRA release folder of `name` under `data_dir`, read where no cache is
    (`no_cache` says so). The release holds the `lra` style only: another style
    raises `ValueError`, and without the release `no_cache` is raised (with where
    the release files go, for the `lra` style)."""
    release = pathfinder_release_dir(data_dir, name)
    if style != "lra":
        if release is None:
            raise no_cache
        raise ValueError(
            f"expected a {name} cache of style {style!r} in {data_dir}, got only the LRA release "
            f"files ({release}), which hold the 'lra' style; "
            f"{_pathfinder_write_advice(data_dir, name, contour_length, style)}, or read the release "
            f"with style='lra'"
        )
    if release is None:
        advice = pathfinder_release_advice(data_dir, name, contour_length)
        raise PathfinderCacheNotFoundError(f"{no_cache}; {advice}") from None
    return release


def make_source(
    name: str,
    split: str,
    *,
    data_dir: str | os.PathLike | None = None,
    seed: int = 0,
    size: int | None = None,
    **options,
):
    """A random-access source (`len`, `source[i] -> dict(inputs, label)`) for one split.

    **Arguments:**

    - `name`: one of `DATASETS` (`pathfinder32`, `pathfinder64`, `pathx`,
      `pathfinder256`, `scifar`, `cifar_gray`, `listops`, `imdb`, `aan`, and the
      byte-level language-modeling corpora `pytext`, `enwik8`, `text8`).
    - `split`: `"train"`, `"val"` or `"test"`.
    - `data_dir`: Pathfinder / ListOps: a cache written by `write_pathfinder` /
      `write_listops` (the directory itself or `data_dir/name`), else the published
      LRA files unpacked from `lra_release.gz` there (`DIR/lra_release/listops-1000/
      basic_*.tsv`, `DIR/lra_release/pathfinder{32,64,128,256}/<level>/`; Pathfinder
      split as S4's pipeline splits it, see `seqkit.data._lra_release`); without
      it examples are generated on the fly.
      CIFAR: the directory holding the CIFAR-10 archive (default `$SEQKIT_DATA`).
      `imdb`: the directory holding `aclImdb_v1.tar.gz` or `aclImdb/`; `aan`: the
      directory where `lra_release.gz` was extracted (holding
      `lra_release/lra_release/tsv_data/`; both default `$SEQKIT_DATA`).
      `enwik8` / `text8`: the directory holding the file or its `.zip` (`DIR/NAME`,
      `DIR/NAME.zip`, `DIR/NAME/NAME`, `DIR/NAME/NAME.zip`; default `$SEQKIT_DATA`).
      `pytext` reads this Python's standard library and ignores `data_dir`.
      `~` and `$VAR` are expanded.
    - `seed`: the data seed of sets generated on the fly (the example stream, not the
      shuffle); a cache keeps the seed it was written with (in its metadata).
      `imdb`: picks the 10% of the training reviews that form `val`. The byte
      corpora ignore it (their splits are fixed byte ranges).
    - `size`: number of examples of the split (default: all; for generated sets
      the published 160k/20k/20k, ListOps 96k/2k/2k).
    - `options`: Pathfinder: `contour_length` (6, 9, 14; default 14), `style`
      (`"lra"`, default: dashed snakes as LRA generated them; `"continuous"`:
      seqkit's unbroken snakes; a cache must have been written with the same, and
      the LRA release files hold `"lra"` only: another style there is refused) and
      `as_tokens`; `cifar_gray`: `as_tokens`; the image datasets (Pathfinder,
      `scifar`, `cifar_gray`): `patch_size` `P`, each image as its sequence of
      `P × P` patches ([`seqkit.data.patchify`][]: `(H/P · W/P, P·P·C)` inputs,
      the Vision Transformer's input; `P` must divide the side, and token inputs,
      `as_tokens`, are refused); `listops`: `max_length` (padded
      length, default 2048; items also hold a bool `mask`); `imdb`, `aan`:
      `max_length` (bytes kept per document, default 4096 / 4000; items also hold
      a bool `mask`, and `aan` inputs are `(2, max_length)`, one row per paper);
      `imdb` with `patch_size` `P`: each review rendered as PIXEL renders text
      (Rust et al., ICLR 2023; [`seqkit.data.RenderedTextSource`][]), one line `P`
      pixels high cut into `max_length` patches of `P × P` (default 529, PIXEL's):
      `inputs` float32 `(max_length, P·P)`, 1 = ink, and `mask` True up to the
      last patch with ink;
      `pytext`, `enwik8`, `text8`: `max_length` (`L`, bytes per example, default 512);
      with `patch_size` `P`, chunks of `4 · max_length` bytes rendered as `imdb`'s
      reviews are, `max_length` patches each (text for PIXEL's pretraining,
      `trainer.objective=masked_patches`; `label` stays the chunk's next bytes).

    **Returns:**

    A source whose items have `inputs` float32 `(L, C)` (real-valued) or int32
    `(L,)` (tokens) and `label` int32. The byte corpora (`ByteSource`) are
    language modeling: example `i` is chunk `i` of `L + 1` consecutive bytes of the
    split (90/5/5% of the stream by position; enwik8 and text8 90M/5M/5M bytes),
    `inputs` int32 `(L,)` its first `L` bytes and `label` int32 `(L,)` its last `L`
    (the next byte at each position), values 0..255. Files are read (CIFAR) or checked
    (Pathfinder cache) here: a missing one raises `DataNotFoundError` or
    `PathfinderCacheNotFoundError` (`FileNotFoundError`s), a truncated or corrupt
    one `DataError` (a `ValueError`), each naming the file.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {sorted(DATASETS)}")
    if split not in ("train", "val", "test"):
        raise ValueError(f"expected split in ('train', 'val', 'test'), got {split!r}")
    unknown = sorted(set(options) - set(_OPTIONS[name]))
    if unknown:
        accepted = ", ".join(_OPTIONS[name]) or "none"
        raise ValueError(f"unknown option(s) {unknown} for {name!r}; accepted: {accepted}")
    if size is not None and size < 0:
        raise ValueError(f"expected size >= 0, got {size}")
    as_tokens = bool(options.get("as_tokens", False))
    patch = options.pop("patch_size", None)
    if patch is not None and name == "imdb":
        check_patch_size(patch, patch, patch)
        n_patches = int(options.pop("max_length", MAX_PATCHES))
        if n_patches < 1:
            raise ValueError(f"expected max_length (patches per review) >= 1, got {n_patches}")
        # At most P·N characters are drawn, each at most 4 UTF-8 bytes.
        source = ImdbSource(split, data_dir=data_dir, seed=seed, size=size, max_length=4 * patch * n_patches)
        return RenderedTextSource(source, patch=patch, max_patches=n_patches)
    if patch is not None and name in BYTE_CORPORA:
        check_patch_size(patch, patch, patch)
        n_patches = int(options.pop("max_length", MAX_PATCHES))
        if n_patches < 1:
            raise ValueError(f"expected max_length (patches per chunk) >= 1, got {n_patches}")
        # About 2.7 characters of source code fill a 16 x 16 patch: 4 bytes a patch leave none empty.
        source = make_source(name, split, data_dir=data_dir, size=size, max_length=4 * n_patches)
        return RenderedTextSource(source, decode_utf8, patch=patch, max_patches=n_patches)
    if patch is not None:
        if as_tokens:
            raise ValueError(
                f"patch_size={patch!r} needs real-valued pixels; {name!r} with as_tokens=True gives "
                "gray-level tokens, which cannot be cut into patches: drop one of the two options"
            )
        side = PATHFINDER_PRESETS[name].size if name in PATHFINDER_PRESETS else 32
        check_patch_size(side, side, patch)  # before any file is read
        source = make_source(name, split, data_dir=data_dir, seed=seed, size=size, **options)
        return PatchSource(source, side, side, patch)
    if name in PATHFINDER_PRESETS:
        contour_length = int(options.get("contour_length", 14))
        style = str(options.get("style", "lra"))
        cfg = pathfinder_config(name, contour_length, style)
        if data_dir is None:
            return PathfinderSource(cfg, split, seed=seed, size=size, as_tokens=as_tokens)
        data_dir = expand_path(data_dir)
        try:
            directory = _pathfinder_cache_dir(data_dir, name, contour_length, style)
        except PathfinderCacheNotFoundError as e:  # no cache: the LRA release files, if there
            release = _pathfinder_release_dir(data_dir, name, contour_length, style, e)
            return PathfinderReleaseSource(
                release, name, split, contour_length=contour_length, size=size, as_tokens=as_tokens
            )
        # Level and style first: a cache of another one is refused whatever its sizes.
        check_pathfinder_cache(read_pathfinder_metadata(directory), directory, name, contour_length, style)
        return PathfinderCacheSource(directory, split, size=size, as_tokens=as_tokens)
    if name == "listops":
        seq_len = int(options.get("max_length", 2048))
        if data_dir is None:
            return ListOpsSource(split, seed=seed, size=size, seq_len=seq_len)
        data_dir = expand_path(data_dir)
        try:
            directory = find_listops_cache(data_dir, name)
        except ListOpsCacheNotFoundError as e:  # no cache: the LRA release files, if there
            release = listops_release_dir(data_dir)
            if release is None:
                raise ListOpsCacheNotFoundError(f"{e}; {listops_release_advice(data_dir)}") from None
            return ListOpsReleaseSource(release, split, size=size, seq_len=seq_len)
        # The LRA grammar: a cache written with another one is refused.
        return ListOpsCacheSource(directory, split, size=size, seq_len=seq_len, config=ListOpsConfig())
    if name == "imdb":
        return ImdbSource(split, data_dir=data_dir, seed=seed, size=size, **options)
    if name == "aan":
        return AanSource(split, data_dir=data_dir, size=size, **options)
    if name in BYTE_CORPORA:
        data_dir = None if name == "pytext" else data_dir
        return ByteSource(name, split, data_dir=data_dir, size=size, **options)
    return CifarSource(
        split, data_dir=data_dir, grayscale=name == "cifar_gray", as_tokens=as_tokens, size=size
    )
