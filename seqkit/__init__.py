"""seqkit: state-space and long-sequence models in JAX and Equinox.

Public namespaces: `seqkit.ssm` (state-space cores), `seqkit.nn` (layers and
blocks), `seqkit.kernels` (the hot loops behind the pure functions).
"""

__version__ = "0.1.0"
