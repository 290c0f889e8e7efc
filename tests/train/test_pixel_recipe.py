"""`pixel-text` (Rust et al., "Language Modelling with Pixels", ICLR 2023): PIXEL's
patch size, length and ViT-Base encoder on rendered IMDb, and two real steps of
its smoke preset on the fake IMDb archive."""

import math

from fake_corpora import write_imdb
from recipe_testing import two_steps, with_data

from seqkit.recipes import pixel


def test_pixel_text_structure():
    r = pixel.recipe()
    m = r.model
    # PIXEL: 16 x 16 patches, 529 of them; ViT-Base 768 x 12, 12 heads, MLP 4 x d.
    assert (r.data.name, r.data.patch_size, r.data.max_length) == ("imdb", 16, 529)
    assert (m.d_model, m.n_layers, m.mixers[0].num_heads, m.ffn_mult) == (768, 12, 12, 4)
    assert (m.pool, m.positions, m.norm, m.prenorm, m.ffn_activation) == (
        "cls",
        "learned",
        "layer",
        True,
        "gelu",
    )


def test_pixel_text_smoke_takes_two_finite_steps(tmp_path):
    r = with_data(
        pixel.PRESETS["smoke"](pixel.recipe()), {"imdb": write_imdb(tmp_path / "imdb", per_class=60)}
    )
    sources = r.make_sources()
    item = sources["train"][0]
    assert item["inputs"].shape == (64, 256) and item["mask"].any()
    losses, opt_state = two_steps(r)
    assert all(math.isfinite(v) for v in losses) and losses[0] > 0, losses
    assert int(opt_state.total_notfinite) == 0
