"""Text rendered as PIXEL renders it (Rust et al., "Language Modelling with Pixels",
ICLR 2023): one line 16 pixels high, cut into 16 x 16 patches, with a mask of the
patches up to the text's end. References: the rendered image cut by an explicit
loop, the reviews read from the fake archive's files, and prefix texts."""

import os

import numpy as np
import pytest
from fake_corpora import write_imdb

import seqkit.data._render as render
from seqkit.data import make_source
from seqkit.data._imdb import ImdbSource
from seqkit.data._render import RenderedTextSource, render_patches, render_text

SENTENCE = "The quick brown fox jumps over the lazy dog, again and again."


def ink_end(image):
    """One past the rightmost column with ink, by a loop over columns."""
    end = 0
    for c in range(image.shape[1]):
        if any(image[r, c] > 0 for r in range(image.shape[0])):
            end = c + 1
    return end


def test_rendering_is_deterministic_and_in_range():
    a = render_text(SENTENCE)
    b = render_text(SENTENCE)
    assert a.dtype == np.float32 and a.shape == (16, 16 * 529)
    np.testing.assert_array_equal(a, b)
    assert a.min() >= 0.0 and a.max() <= 1.0 and a.max() > 0.5  # ink is 1
    p1, m1 = render_patches(SENTENCE)
    p2, m2 = render_patches(SENTENCE)
    np.testing.assert_array_equal(p1, p2)
    np.testing.assert_array_equal(m1, m2)


@pytest.mark.parametrize("blank", ["", "   ", "\n\t  \r\n"])
def test_blank_text_has_no_ink_and_no_real_patch(blank):
    assert not render_text(blank, max_width=64).any()
    patches, mask = render_patches(blank, max_patches=8)
    assert patches.shape == (8, 256) and not patches.any()
    assert mask.dtype == bool and mask.shape == (8,) and not mask.any()


def test_patch_layout_and_mask_match_an_explicit_loop():
    P, N = 16, 40
    image = render_text(SENTENCE, height=P, max_width=P * N)
    patches, mask = render_patches(SENTENCE, patch=P, max_patches=N)
    expected = np.zeros((N, P * P), np.float32)
    for j in range(N):
        for a in range(P):
            for b in range(P):
                expected[j, a * P + b] = image[a, j * P + b]
    np.testing.assert_array_equal(patches, expected)
    n_real = -(-ink_end(image) // P)
    assert 10 < n_real < N  # the sentence fills some patches and leaves padding
    np.testing.assert_array_equal(mask, np.arange(N) < n_real)
    assert patches[n_real:].sum() == 0 and all(patches[j].any() for j in (0, n_real - 1))


@pytest.mark.parametrize(("short", "longer"), [("ab", "abc"), (SENTENCE[:30], SENTENCE)])
def test_ink_grows_left_to_right(short, longer):
    # A longer text draws the shorter one's glyphs at the same places: the columns
    # before the shorter text's last inked column (less 2 for antialiased glyph
    # edges shared with the next glyph) are identical.
    a, b = render_text(short, max_width=1024), render_text(longer, max_width=1024)
    end = ink_end(a)
    assert end > 8
    np.testing.assert_array_equal(a[:, : end - 2], b[:, : end - 2])
    assert ink_end(b) > end
    assert not a[:, end:].any() and b[:, end:].any()


def test_real_patch_count_never_shrinks_as_text_grows():
    counts = [
        int(render_patches(SENTENCE[:k], max_patches=64)[1].sum()) for k in range(0, len(SENTENCE) + 1, 4)
    ]
    assert counts[0] == 0 and counts[-1] > 20
    assert all(x <= y for x, y in zip(counts, counts[1:], strict=False)), counts


def test_long_text_is_cut_to_max_width_and_lines_are_one():
    text = "word " * 2000
    patches, mask = render_patches(text, max_patches=12)
    assert mask.all() and patches.shape == (12, 256)
    # A newline is drawn as a space: one line, the same pixels.
    np.testing.assert_array_equal(render_text("ab\ncd", max_width=128), render_text("ab cd", max_width=128))


def test_bad_arguments_say_what_was_expected():
    with pytest.raises(ValueError, match="expected max_patches a positive integer, got 0"):
        render_patches("a", max_patches=0)
    with pytest.raises(ValueError, match="expected max_width a positive integer, got -16"):
        render_text("a", max_width=-16)


def test_missing_freetype_is_a_clear_error(monkeypatch):
    import PIL.features

    monkeypatch.setattr(PIL.features, "check", lambda name: False)
    render._font.cache_clear()
    try:
        with pytest.raises(RuntimeError, match="FreeType"):
            render_text("a", font_size=11)
    finally:
        render._font.cache_clear()


class _Tokens:
    """Two texts as imdb-style byte tokens (byte + 1, padding 0, mask)."""

    texts = ["great film", "awful plot, ünïcode"]

    def __len__(self):
        return 2

    def __getitem__(self, i):
        raw = np.frombuffer(self.texts[i].encode(), np.uint8)
        inputs = np.zeros(64, np.int32)
        inputs[: raw.size] = raw.astype(np.int32) + 1
        return {"inputs": inputs, "mask": np.arange(64) < raw.size, "label": np.int32(i)}


def test_rendered_source_renders_the_decoded_text():
    src = RenderedTextSource(_Tokens(), patch=16, max_patches=10)
    assert len(src) == 2
    for i, text in enumerate(_Tokens.texts):
        item = src[i]
        patches, mask = render_patches(text, max_patches=10)
        np.testing.assert_array_equal(item["inputs"], patches)
        np.testing.assert_array_equal(item["mask"], mask)
        assert item["inputs"].dtype == np.float32 and item["label"] == i


def test_make_source_renders_imdb_reviews(tmp_path):
    root = write_imdb(tmp_path / "imdb", per_class=6)
    src = make_source("imdb", "train", data_dir=root, patch_size=16, max_length=24)
    plain = ImdbSource("train", data_dir=root)
    assert len(src) == len(plain) > 0
    for i in range(3):
        with open(os.path.join(root, plain.name(i)), encoding="utf-8") as f:
            text = f.read().strip()
        patches, mask = render_patches(text, max_patches=24)
        item = src[i]
        np.testing.assert_array_equal(item["inputs"], patches)
        np.testing.assert_array_equal(item["mask"], mask)
        assert item["label"] == plain[i]["label"]
    default = make_source("imdb", "val", data_dir=root, patch_size=16)
    assert default[0]["inputs"].shape == (529, 256)  # PIXEL's 529 patches
    with pytest.raises(ValueError, match="expected a patch size that is a positive integer"):
        make_source("imdb", "train", data_dir=root, patch_size=0)
