"""Data: grain pipelines, generated LRA tasks (Pathfinder/Path-X) and readers for standard corpus files.

- `make_source(name, split, ...)`: a random-access source per dataset and split
  (`DATASETS` lists the names); `batches(source, ...)`: seeded, resumable batches.
- Pathfinder/Path-X: `generate_pathfinder`, `pathfinder_config`, `PATHFINDER_PRESETS`,
  `write_pathfinder` (memory-mapped cache) and the sources behind `make_source`.
- Sequential CIFAR-10: `CifarSource`, read from the standard python archive.
- Errors: `DataNotFoundError` / `PathfinderCacheNotFoundError` (missing files, a
  `FileNotFoundError`), `DataError` (a file there but truncated or corrupt, a `ValueError`).
"""

from ._cifar import CifarSource as CifarSource, DataNotFoundError as DataNotFoundError
from ._files import DataError as DataError
from ._pathfinder import (
    PATHFINDER_PRESETS as PATHFINDER_PRESETS,
    PathfinderCacheNotFoundError as PathfinderCacheNotFoundError,
    PathfinderCacheSource as PathfinderCacheSource,
    PathfinderConfig as PathfinderConfig,
    PathfinderExample as PathfinderExample,
    PathfinderSource as PathfinderSource,
    generate_pathfinder as generate_pathfinder,
    pathfinder_config as pathfinder_config,
    write_pathfinder as write_pathfinder,
)
from ._pipeline import batch_dataset as batch_dataset, batches as batches
from ._registry import DATASETS as DATASETS, make_source as make_source
