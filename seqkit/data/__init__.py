"""Data: grain pipelines, generated LRA tasks (Pathfinder/Path-X) and readers for standard corpus files.

- `make_source(name, split, ...)`: a random-access source per dataset and split
  (`DATASETS` lists the names); `batches(source, ...)`: seeded, resumable batches.
- Pathfinder/Path-X: `generate_pathfinder`, `pathfinder_config`, `PATHFINDER_PRESETS`,
  `write_pathfinder` (memory-mapped cache) and the sources behind `make_source`.
- Sequential CIFAR-10: `CifarSource`, read from the standard python archive.
- `add_data_parser`, `data_command`, `cli_data`: the `seqkit data` subcommand.
"""

from ._cifar import CifarSource as CifarSource
from ._cifar import DataNotFoundError as DataNotFoundError
from ._cli import add_data_parser as add_data_parser
from ._cli import cli_data as cli_data
from ._cli import data_command as data_command
from ._pathfinder import (
    PATHFINDER_PRESETS as PATHFINDER_PRESETS,
)
from ._pathfinder import (
    PathfinderCacheNotFoundError as PathfinderCacheNotFoundError,
)
from ._pathfinder import (
    PathfinderCacheSource as PathfinderCacheSource,
)
from ._pathfinder import (
    PathfinderConfig as PathfinderConfig,
)
from ._pathfinder import (
    PathfinderExample as PathfinderExample,
)
from ._pathfinder import (
    PathfinderSource as PathfinderSource,
)
from ._pathfinder import (
    generate_pathfinder as generate_pathfinder,
)
from ._pathfinder import (
    pathfinder_config as pathfinder_config,
)
from ._pathfinder import (
    write_pathfinder as write_pathfinder,
)
from ._pipeline import batch_dataset as batch_dataset
from ._pipeline import batches as batches
from ._registry import DATASETS as DATASETS
from ._registry import make_source as make_source
