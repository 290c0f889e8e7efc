"""The one legend of dimension names used in seqkit's jaxtyping annotations.

- `L`: sequence length
- `d_model` / `H`: channels (model width); an SSM core runs one system per channel
- `N`: state size (real dimension); diagonal and DPLR cores store `n = N // 2`
  complex modes, one per conjugate pair
- `n`: number of stored (complex) modes
- `K`: number of frequencies or evaluation points
- `M`: number of vectors evaluated together
- `h`: attention heads
"""

import jax
import numpy as np

#: What the public pure functions accept: JAX arrays and NumPy arrays alike.
ArrayLike = jax.Array | np.ndarray
