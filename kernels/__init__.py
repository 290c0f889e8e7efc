"""seqkit.kernels: the hot loops behind seqkit's pure functions.

Each kernel is an XLA reference implementation that scales to long sequences
(chunked, never materialising the full `(H, N, L)` tensor).

Some kernels also have a Pallas implementation (GPU/TPU, interpret mode on CPU),
chosen per call by `impl="auto" | "xla" | "pallas"`.
"""

from ._block_sparse_pallas import block_sparse_attention_pallas as block_sparse_attention_pallas
from ._block_sparse_pallas_tpu import block_sparse_attention_pallas_tpu as block_sparse_attention_pallas_tpu
from ._cauchy import cauchy as cauchy
from ._cauchy_pallas import cauchy_pallas as cauchy_pallas
from ._dispatch import default_impl as default_impl, use_impl as use_impl
from ._local_attention_pallas import local_attention_pallas as local_attention_pallas
from ._local_attention_pallas_tpu import local_attention_pallas_tpu as local_attention_pallas_tpu
from ._scan import linear_scan as linear_scan
from ._vandermonde import vandermonde as vandermonde
from ._vandermonde_pallas import vandermonde_pallas as vandermonde_pallas
