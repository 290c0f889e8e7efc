"""Byte-level causal language models: `s4-lm`, `gss-lm`, `mega-lm`, `transformer-lm`,
`transformer-trime-lm`, `transformer-trime-long-lm`, `block-recurrent-lm` and
`perceiver-ar-lm`.

Each is a stack of causal mixers with a per-position head (`pool="none"`): the
logits at position `t` predict byte `t+1`, the loss is the mean cross-entropy
over positions, and `results.json` reports it in bits per byte
(`val_bits_per_token`). A trained run samples text with `seqkit generate
RUN_DIR --prompt ...` through the mixers' step modes.

Data: `pytext`, the Python installation's own standard-library source as bytes
(no download; split 90/5/5 by position), in chunks of 512 bytes. `--set
data.name=enwik8` (or `text8`) with `data.data_dir` reads the standard files
instead (see `seqkit.data`).

The mixers follow their papers: S4 (Gu, Goel and Ré, ICLR 2022) in its causal
form with a GELU FFN per block, as in its language-model experiments; GSS
(Mehta, Gupta, Cutkosky and Neyshabur, ICLR 2023) with its defaults (DSS state
512, expansion 3, SSM width d/4) and no FFN, as the paper stacks GSS layers
alone; Mega (Ma et al., ICLR 2023) causal with softmax attention over the whole
chunk and a SiLU FFN; the Transformer (Vaswani et al., 2017) with sinusoidal
positions and a GELU FFN of 4·d; Perceiver AR (Hawthorne et al., ICML 2022) with
the last 128 of 512 positions as latents, one causal cross-attention into them
(learned positions) and causal self-attention blocks on the latents, scored on
the latents' 128 next bytes only; the Block-Recurrent Transformer (Hutchins et
al., NeurIPS 2022) with its recurrent layer (blocks of W tokens attending to the
previous block and to M state vectors, the state updated through a fixed gate)
in every layer, W = M = 64 and a GELU FFN of 4·d (the paper: W = M = 512, 12
layers, one recurrent layer at layer 10, T5 relative positions; here no
positions, the windows are causal). Width, depth, length, batch and schedule are
seqkit's choices for a small byte-level model (not a published run): 6 layers of
256, AdamW lr 1e-3 (SSM parameters 1e-3 without weight decay), weight decay 0.1,
gradient clipping 1, batch 32 × 512 bytes, 1k warmup of 20k steps, LayerNorm
(BatchNorm would mix statistics across positions, letting the future leak).

`transformer-trime-lm` is `transformer-lm` trained with TRIME's objective (Zhong,
Lei and Chen, "Training Language Models with Memory Augmentation", EMNLP 2022)
with local memories, the paper's TRIMELM (`trainer.objective=trime_local`: the
earlier positions of the same segment), and scored by that distribution. Any of
the others takes it with `--set trainer.objective=trime_local`, or `trime_batch`
for the external in-batch memory as well; at the smoke preset's size
`trime_batch` did not learn (val 4.47 bits per byte against 3.43 for
`trime_local`, measured 2026-12-06): the other 2,000 positions of the batch
outweigh the vocabulary.

`transformer-trime-long-lm` is `transformer-lm` trained with TRIME's long-term
memory, the paper's TRIMELM_long (`trainer.objective=trime_long`): every
training batch is `batch_size` consecutive chunks of the text in order (a
seeded shuffle of such groups, `seqkit.data.batches(..., consecutive=True)`),
and position `t` of chunk `b` may use as memories its own earlier positions and
every position of chunks `0..b-1` of the batch, all of which precede it in the
text. It is scored the same way, on unshuffled evaluation batches of
`eval_batch_size` consecutive chunks. It needs a byte corpus (`pytext`,
`enwik8`, `text8`); other data is refused before anything runs. Its smoke run
measured 3.27 val bits per byte (3.81 scored with local memories only; 2026-12-06).

Preset `smoke`: a 32-wide 2-layer model (Perceiver AR: 32 latents), chunks of 128, 100 steps of 16 at lr 5e-3
(well below the corpus's unigram 4.53 bits per byte on its val chunks).
"""

import dataclasses

from seqkit.attention import MultiHeadAttentionConfig
from seqkit.nn import BlockRecurrentConfig, GSSConfig, MegaConfig, S4Config
from seqkit.train import DataConfig, ModelConfig, OptimizerConfig, Recipe, ScheduleConfig, TrainerConfig

from ._presets import shrink
from ._spec import RecipeSpec

SOURCE = "seqkit's byte-level setting; mixers as in their papers (see recipes/lm.py)"
LENGTH = 512


def _recipe(name: str, model: str, model_config: ModelConfig) -> Recipe:
    return Recipe(
        name=name,
        description=f"{model} byte-level causal language model on the Python standard library's text",
        model=model_config,
        data=DataConfig(name="pytext", max_length=LENGTH, n_classes=256, vocab_size=256),
        optimizer=OptimizerConfig(
            lr=1e-3, weight_decay=0.1, ssm_lr=1e-3, ssm_weight_decay=0.0, b1=0.9, b2=0.98, grad_clip=1.0
        ),
        schedule=ScheduleConfig(warmup_steps=1000, total_steps=20_000),
        trainer=TrainerConfig(batch_size=32, eval_every=1000, checkpoint_every=500, log_every=50),
    )


def _model(mixer, *, ffn_mult: int, ffn_activation: str = "gelu", positions: str = "none") -> ModelConfig:
    return ModelConfig(
        d_model=256,
        n_layers=6,
        mixers=[mixer],
        norm="layer",
        prenorm=True,
        dropout=0.0,
        ffn_mult=ffn_mult,
        ffn_activation=ffn_activation,
        pool="none",
        positions=positions,
    )


_MODELS = {
    "s4-lm": ("S4", lambda: _model(S4Config(state_size=64, bidirectional=False), ffn_mult=2)),
    "block-recurrent-lm": (
        "Block-Recurrent Transformer",
        lambda: _model(
            BlockRecurrentConfig(num_heads=4, block_size=64, num_state=64, gate="fixed"), ffn_mult=4
        ),
    ),
    "gss-lm": ("GSS", lambda: _model(GSSConfig(causal=True), ffn_mult=0)),
    "mega-lm": (
        "Mega",
        lambda: _model(
            MegaConfig(causal=True, attention="softmax", relative_position="simple"),
            ffn_mult=2,
            ffn_activation="silu",
        ),
    ),
    "perceiver-ar-lm": (
        "Perceiver AR",
        lambda: dataclasses.replace(
            _model(MultiHeadAttentionConfig(num_heads=4, causal=True), ffn_mult=4, positions="learned"),
            latents=128,
            cross_heads=4,
        ),
    ),
    "transformer-lm": (
        "Transformer",
        lambda: _model(
            MultiHeadAttentionConfig(num_heads=4, causal=True), ffn_mult=4, positions="sinusoidal"
        ),
    ),
}


def smoke(r: Recipe) -> Recipe:
    """A 32-wide 2-layer model on chunks of 128 bytes, 100 steps of 16 at lr 5e-3."""
    r = shrink(
        r,
        d_model=32,
        n_layers=2,
        sizes=(512, 64, 64),
        batch_size=16,
        warmup_steps=10,
        total_steps=100,
        eval_every=50,
        checkpoint_every=50,
        log_every=10,
        max_length=128,
    )
    model = r.model if r.model.latents is None else dataclasses.replace(r.model, latents=32)
    return dataclasses.replace(r, model=model, optimizer=dataclasses.replace(r.optimizer, lr=5e-3))


def _spec(name: str, base: str, objective: str = "cross_entropy") -> RecipeSpec:
    model, config = _MODELS[base]
    if objective != "cross_entropy":
        model = f"{model} + TRIME" + (" long-term memory" if objective == "trime_long" else "")

    def build() -> Recipe:
        r = _recipe(name, model, config())
        return dataclasses.replace(r, trainer=dataclasses.replace(r.trainer, objective=objective))

    return RecipeSpec(
        name=name,
        description=f"{model} byte-level causal LM on the Python standard library's text; preset smoke",
        build=build,
        presets={"smoke": smoke},
        task="byte LM",
        model=model,
        source=SOURCE,
    )


SPECS = [_spec(name, name) for name in _MODELS] + [
    _spec("transformer-trime-lm", "transformer-lm", objective="trime_local"),
    _spec("transformer-trime-long-lm", "transformer-lm", objective="trime_long"),
]
