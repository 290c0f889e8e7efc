"""seqkit: state-space and long-sequence models in JAX and Equinox.

Public namespaces: `seqkit.ssm` (state-space cores), `seqkit.nn` (layers and
blocks), `seqkit.kernels` (the hot loops behind the pure functions).
"""

import os as _os

__version__ = "0.1.0"


def _search_the_checkout() -> None:
    """Python started in a source checkout imports `seqkit` from its `seqkit/`
    folder, while an install maps two more folders of the checkout into it
    (`seqkit.kernels` from `kernels/`, `seqkit.recipes` from `recipes/`). There,
    search the checkout's root for subpackages too, so it imports as the installed
    package does."""
    here = _os.path.dirname(_os.path.abspath(__file__))
    root = _os.path.dirname(here)
    if not _os.path.isdir(_os.path.join(here, "kernels")) and _os.path.isfile(
        _os.path.join(root, "kernels", "__init__.py")
    ):
        __path__.append(root)


_search_the_checkout()
