"""Images as patch sequences (Dosovitskiy et al., ICLR 2021): `patchify` against an
explicit loop over patch indices, and the `patch_size` option of the image sources."""

import pickle

import jax.numpy as jnp
import numpy as np
import pytest
from fake_corpora import write_cifar

from seqkit.data import PatchSource, make_source, patchify


def patches_by_loop(pixels, height, width, p):
    """From the definition: patch (i, j) in row-major patch order, its entries
    row-major over (row in patch a, column in patch b, channel k)."""
    c = pixels.shape[1]
    image = np.zeros((height, width, c), pixels.dtype)
    for r in range(height):
        for col in range(width):
            image[r, col] = pixels[r * width + col]
    out = []
    for i in range(height // p):
        for j in range(width // p):
            flat = []
            for a in range(p):
                for b in range(p):
                    for k in range(c):
                        flat.append(image[i * p + a, j * p + b, k])
            out.append(flat)
    return np.array(out, pixels.dtype)


SHAPES = [(4, 4, 2, 1), (6, 4, 2, 3), (8, 12, 4, 2), (5, 5, 1, 2)]


@pytest.mark.parametrize(("height", "width", "p", "c"), SHAPES)
def test_patchify_matches_the_loop(height, width, p, c):
    pixels = np.random.default_rng(0).normal(size=(height * width, c)).astype(np.float32)
    out = patchify(pixels, height, width, p)
    assert out.shape == (height * width // p**2, p * p * c)
    np.testing.assert_array_equal(out, patches_by_loop(pixels, height, width, p))
    # A JAX array gives the same patches.
    np.testing.assert_array_equal(np.asarray(patchify(jnp.asarray(pixels), height, width, p)), out)


def test_every_pixel_appears_exactly_once():
    height, width, p, c = 8, 16, 4, 3
    ids = np.arange(height * width * c).reshape(height * width, c)
    out = patchify(ids, height, width, p)
    np.testing.assert_array_equal(np.sort(out.ravel()), np.arange(height * width * c))
    # Patches of one pixel, or one patch holding the whole image: the pixels in their own order.
    np.testing.assert_array_equal(patchify(ids, height, width, 1), ids)
    np.testing.assert_array_equal(patchify(ids[: 8 * 8], 8, 8, 8), ids[: 8 * 8].reshape(1, -1))


def test_patchify_errors():
    pixels = np.zeros((64, 3), np.float32)
    with pytest.raises(ValueError, match=r"dividing the image's height and width \(8 x 8\), got 3"):
        patchify(pixels, 8, 8, 3)
    with pytest.raises(ValueError, match="positive integer, got 0"):
        patchify(pixels, 8, 8, 0)
    expected = r"shape \(H·W, C\) = \(100, C\) for a 10 x 10 image, got shape \(64, 3\)"
    with pytest.raises(ValueError, match=expected):
        patchify(pixels, 10, 10, 2)
    with pytest.raises(ValueError, match=r"got shape \(64,\)"):
        patchify(np.zeros(64), 8, 8, 2)


def test_pathfinder_patches():
    plain = make_source("pathfinder32", "train", size=3)
    patched = make_source("pathfinder32", "train", patch_size=4, size=3)
    assert isinstance(patched, PatchSource) and len(patched) == 3
    for i in range(3):
        item = patched[i]
        assert item["inputs"].shape == (64, 16) and item["inputs"].dtype == np.float32
        np.testing.assert_array_equal(item["inputs"], patches_by_loop(plain[i]["inputs"], 32, 32, 4))
        assert item["label"] == plain[i]["label"]
    # Picklable for grain's worker processes.
    again = pickle.loads(pickle.dumps(patched))
    np.testing.assert_array_equal(again[1]["inputs"], patched[1]["inputs"])


def test_scifar_patches(tmp_path):
    root = write_cifar(tmp_path / "cifar", per_batch=20, n_test=10)
    plain = make_source("scifar", "test", data_dir=root, size=2)
    patched = make_source("scifar", "test", data_dir=root, size=2, patch_size=4)
    assert len(patched) == 2
    item = patched[0]
    assert item["inputs"].shape == (64, 48)
    np.testing.assert_array_equal(item["inputs"], patches_by_loop(plain[0]["inputs"], 32, 32, 4))
    gray = make_source("cifar_gray", "test", data_dir=root, size=2, patch_size=8)
    assert gray[1]["inputs"].shape == (16, 64)


def test_patch_size_errors(tmp_path):
    with pytest.raises(ValueError, match=r"patch_size=4 needs real-valued pixels.*as_tokens=True"):
        make_source("pathfinder32", "train", size=3, patch_size=4, as_tokens=True)
    with pytest.raises(ValueError, match=r"dividing the image's height and width \(32 x 32\), got 5"):
        make_source("pathfinder32", "train", size=3, patch_size=5)
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['patch_size'\] for 'listops'"):
        make_source("listops", "train", size=3, patch_size=4)
    # Checked before any file is looked for.
    with pytest.raises(ValueError, match="got 7"):
        make_source("scifar", "train", data_dir=tmp_path / "nothing", patch_size=7)
