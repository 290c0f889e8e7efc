"""Images as sequences of patches (Dosovitskiy et al., "An Image is Worth 16x16 Words:
Transformers for Image Recognition at Scale", ICLR 2021).

An image `x ∈ R^{H×W×C}` becomes `N = HW/p²` flattened patches
`x_p ∈ R^{N × (p²·C)}`; the Vision Transformer's input is
`z_0 = [x_class; x_p^1 E; …; x_p^N E] + E_pos`, with `E` a linear patch embedding,
`x_class` a learned class token and `E_pos` learned position embeddings. seqkit's
image sources give an image as `(H·W, C)` pixels in row-major order; `patchify`
turns that into the `(N, p²·C)` patch sequence, and
`SequenceModel(d_in=p²·C, pool="cls", positions="learned")` adds the rest (its
encoder `Linear` is `E`).
"""

from __future__ import annotations

import numpy as np


def check_patch_size(height: int, width: int, patch: int) -> None:
    """A `ValueError` unless `patch` is a positive integer dividing `height` and `width`."""
    if isinstance(patch, bool) or not isinstance(patch, int | np.integer) or patch < 1:
        raise ValueError(f"expected a patch size that is a positive integer, got {patch!r}")
    if height % patch or width % patch:
        raise ValueError(
            f"expected a patch size dividing the image's height and width ({height} x {width}), got {patch}"
        )


def patchify(pixels, height: int, width: int, patch: int):
    """The image `pixels` as a sequence of non-overlapping `patch × patch` patches.

    With `P = patch`, the image `x[r, c, k] = pixels[r·W + c, k]` (row-major pixels)
    becomes, for patch row `i < H/P` and patch column `j < W/P`,

    `out[i·(W/P) + j, (a·P + b)·C + k] = x[i·P + a, j·P + b, k]`

    for `a, b < P` and channel `k < C`: patches in row-major order, each flattened
    row-major over (row in the patch, column in the patch, channel). This is the
    `x_p ∈ R^{N × (P²·C)}` of Dosovitskiy et al., "An Image is Worth 16x16
    Words", ICLR 2021 (`N = HW/P²`).

    **Arguments:** `pixels`, `(H·W, C)` (a numpy or JAX array); `height`, `width`,
    the image's `H` and `W`; `patch`, `P`, which must divide both.

    **Returns:** `(H/P · W/P, P·P·C)`, of the dtype of `pixels`.
    """
    check_patch_size(height, width, patch)
    if not hasattr(pixels, "reshape") or not hasattr(pixels, "ndim"):
        pixels = np.asarray(pixels)
    if pixels.ndim != 2 or pixels.shape[0] != height * width:
        raise ValueError(
            f"expected pixels of shape (H·W, C) = ({height * width}, C) for a {height} x {width} "
            f"image, got shape {tuple(pixels.shape)}"
        )
    c = pixels.shape[1]
    rows, cols = height // patch, width // patch
    x = pixels.reshape(rows, patch, cols, patch, c)  # (i, a, j, b, k)
    return x.transpose(0, 2, 1, 3, 4).reshape(rows * cols, patch * patch * c)


class PatchSource:
    """A source of images, each as its patch sequence ([`seqkit.data.patchify`][]):
    item `i` is `source[i]` with `inputs` replaced by
    `patchify(inputs, height, width, patch)`; every other key as it was.

    `len` is the wrapped source's. It pickles as the wrapped source does (for
    grain's worker processes).
    """

    def __init__(self, source, height: int, width: int, patch: int):
        check_patch_size(height, width, patch)
        self.source = source
        self.height, self.width, self.patch = int(height), int(width), int(patch)

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i):
        item = dict(self.source[i])
        inputs = np.asarray(item["inputs"])
        if inputs.ndim != 2:
            raise ValueError(
                f"patches need real-valued pixels (H·W, C); item {i} has inputs of shape "
                f"{inputs.shape} ({inputs.dtype}): token inputs (as_tokens) cannot be cut into patches"
            )
        item["inputs"] = patchify(inputs, self.height, self.width, self.patch)
        return item

    def __repr__(self):
        return f"PatchSource({self.source!r}, {self.height}x{self.width}, patch={self.patch})"
