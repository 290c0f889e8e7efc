"""What the CPU presets of every recipe share: a smaller model, fewer examples, fewer steps."""

import dataclasses

from seqkit.train import Recipe, ScheduleConfig


def shrink(
    r: Recipe,
    *,
    d_model: int,
    n_layers: int,
    sizes: tuple[int, int, int],
    batch_size: int,
    warmup_steps: int,
    total_steps: int,
    eval_every: int,
    checkpoint_every: int,
    log_every: int,
    **data,
) -> Recipe:
    """`r` scaled down: model width/depth, split sizes (train, val, test), schedule and
    trainer cadence; `data` sets further `DataConfig` fields. A layer `pattern` keeps
    its first `n_layers` entries (SPADE's `[0, 1, 1, 1, 1, 1]` becomes `[0, 1, 1]`)."""
    train, val, test = sizes
    pattern = r.model.pattern
    if pattern is not None:  # keep the first layers' mixers; repeat the last one if deeper
        pattern = (list(pattern) + [pattern[-1]] * n_layers)[:n_layers]
    return dataclasses.replace(
        r,
        model=dataclasses.replace(r.model, d_model=d_model, n_layers=n_layers, pattern=pattern),
        data=dataclasses.replace(r.data, train_size=train, val_size=val, test_size=test, **data),
        schedule=ScheduleConfig(warmup_steps=warmup_steps, total_steps=total_steps),
        trainer=dataclasses.replace(
            r.trainer,
            batch_size=batch_size,
            eval_every=eval_every,
            checkpoint_every=checkpoint_every,
            log_every=log_every,
        ),
    )


def cpu_pathfinder(r: Recipe, *, n_layers: int = 3) -> Recipe:
    """Pathfinder's CPU job: the easy level (contour length 6, the `continuous` style
    of solid snakes, about 10x faster to generate than LRA's dashed paths), a 32-wide
    model of `n_layers`, 400 steps of 32 on 8,000 images (512 val, 512 test), kept
    in memory. Minutes on two cores; every Pathfinder recipe's `cpu` preset starts
    from it, so their results compare."""
    return shrink(
        r,
        d_model=32,
        n_layers=n_layers,
        sizes=(8000, 512, 512),
        batch_size=32,
        warmup_steps=40,
        total_steps=400,
        eval_every=100,
        checkpoint_every=50,
        log_every=10,
        contour_length=6,
        style="continuous",
        memory_cache=True,
    )


def cpu_listops(r: Recipe) -> Recipe:
    """ListOps' CPU job: LRA's trees at their padded length, a 64-wide 4-layer model,
    800 steps of 32 (25,600 trees, each seen once; 500 val, 500 test). About 15
    minutes on two cores for S4."""
    return shrink(
        r,
        d_model=64,
        n_layers=4,
        sizes=(25_600, 500, 500),
        batch_size=32,
        warmup_steps=80,
        total_steps=800,
        eval_every=200,
        checkpoint_every=200,
        log_every=20,
    )


def smoke(r: Recipe) -> Recipe:
    """A few minutes on a CPU: a 32-wide 2-layer model, 30 steps of 16 on 512 examples."""
    return shrink(
        r,
        d_model=32,
        n_layers=2,
        sizes=(512, 100, 100),
        batch_size=16,
        warmup_steps=5,
        total_steps=30,
        eval_every=15,
        checkpoint_every=15,
        log_every=5,
    )
