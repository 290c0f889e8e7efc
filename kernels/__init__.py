"""seqkit.kernels: the hot loops behind seqkit's pure functions.

Each kernel is an XLA reference implementation that scales to long sequences
(chunked, never materialising the full `(H, N, L)` tensor).
"""

from ._cauchy import cauchy as cauchy
from ._vandermonde import vandermonde as vandermonde
