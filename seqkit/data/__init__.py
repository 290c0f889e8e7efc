"""Data: grain pipelines, generated LRA tasks (Pathfinder/Path-X) and readers for standard corpus files.

- `make_source(name, split, ...)`: a random-access source per dataset and split
  (`DATASETS` lists the names); `batches(source, ...)`: seeded, resumable batches.
- Pathfinder/Path-X: `generate_pathfinder` (and `generate_pathfinder_batch`),
  `pathfinder_config` (style `"lra"`, `SnakesConfig`: dashed snakes as LRA generated
  them; or `"continuous"`, `PathfinderConfig`), `PATHFINDER_PRESETS`,
  `write_pathfinder` (memory-mapped cache) and the sources behind `make_source`.
- ListOps: `generate_listops` (LRA's generator, seeded per example), `write_listops`
  (memory-mapped cache), `evaluate_listops`, `listops_text` and the sources behind
  `make_source`.
- Sequential CIFAR-10: `CifarSource`, read from the standard python archive.
- Images as patch sequences (the Vision Transformer's input): `patchify` and
  `PatchSource`, behind `make_source(..., patch_size=P)`.
- LRA Text / Retrieval: `ImdbSource` (IMDb reviews as bytes, from `aclImdb_v1.tar.gz`)
  and `AanSource` (AAN paper pairs as bytes, from LRA's `new_aan_pairs.*.tsv`);
  `check_imdb_files` / `check_aan_files` list the files each reads (`FileCheck`).
- Byte-level language modeling (next byte, vocabulary 256): `ByteSource` for
  `pytext` (this Python's standard library source, no download; `pytext_fingerprint`
  says which), `enwik8` and `text8` (from `enwik8`/`text8` or their `.zip` in the
  data directory; 90M/5M/5M bytes); item `i` is chunk `i` of `L + 1` bytes,
  `inputs` its first `L`, `label` its last `L`. `unigram_bits_per_byte` is the
  byte-frequency entropy a model must beat; `check_enwik8_files` / `check_text8_files`.
- Published LRA files (`lra_release.gz`): `ListOpsReleaseSource` (`basic_*.tsv`) and
  `PathfinderReleaseSource` (PNG folders, split as S4 splits them: `s4_permutation`),
  chosen by `make_source` when the data directory holds them.
- `check_dataset(name, data_dir)` (`seqkit data check`): which files a dataset reads,
  which are there and where the others go (`CHECKERS`, `check_cifar_files`,
  `check_listops_files`, `check_pathfinder_files`).
- Errors: `DataNotFoundError` / `PathfinderCacheNotFoundError` (missing files, a
  `FileNotFoundError`), `DataError` (a file there but truncated or corrupt, a `ValueError`).
"""

from ._aan import AanSource as AanSource, check_aan_files as check_aan_files
from ._bytes import (
    ByteSource as ByteSource,
    check_enwik8_files as check_enwik8_files,
    check_text8_files as check_text8_files,
    pytext_fingerprint as pytext_fingerprint,
    unigram_bits_per_byte as unigram_bits_per_byte,
)
from ._check import CHECKERS as CHECKERS, DataCheck as DataCheck, check_dataset as check_dataset
from ._cifar import (
    CifarSource as CifarSource,
    DataNotFoundError as DataNotFoundError,
    check_cifar_files as check_cifar_files,
)
from ._files import DataError as DataError, FileCheck as FileCheck
from ._imdb import ImdbSource as ImdbSource, check_imdb_files as check_imdb_files
from ._listops import (
    ListOpsCacheNotFoundError as ListOpsCacheNotFoundError,
    ListOpsCacheSource as ListOpsCacheSource,
    ListOpsConfig as ListOpsConfig,
    ListOpsExample as ListOpsExample,
    ListOpsSource as ListOpsSource,
    evaluate_listops as evaluate_listops,
    generate_listops as generate_listops,
    generate_listops_batch as generate_listops_batch,
    listops_split_of as listops_split_of,
    listops_text as listops_text,
    tokenize_listops as tokenize_listops,
    write_listops as write_listops,
)
from ._lra_release import (
    ListOpsReleaseSource as ListOpsReleaseSource,
    PathfinderReleaseSource as PathfinderReleaseSource,
    check_listops_files as check_listops_files,
    check_pathfinder_files as check_pathfinder_files,
    s4_permutation as s4_permutation,
)
from ._patches import PatchSource as PatchSource, patchify as patchify
from ._pathfinder import (
    PATHFINDER_PRESETS as PATHFINDER_PRESETS,
    PathfinderCacheNotFoundError as PathfinderCacheNotFoundError,
    PathfinderCacheSource as PathfinderCacheSource,
    PathfinderConfig as PathfinderConfig,
    PathfinderExample as PathfinderExample,
    PathfinderSource as PathfinderSource,
    generate_pathfinder as generate_pathfinder,
    generate_pathfinder_batch as generate_pathfinder_batch,
    pathfinder_config as pathfinder_config,
    write_pathfinder as write_pathfinder,
)
from ._pipeline import batch_dataset as batch_dataset, batches as batches
from ._registry import DATASETS as DATASETS, make_source as make_source
from ._render import (
    RenderedTextSource as RenderedTextSource,
    decode_byte_tokens as decode_byte_tokens,
    decode_utf8 as decode_utf8,
    render_patches as render_patches,
    render_text as render_text,
)
from ._snakes import SnakesConfig as SnakesConfig
