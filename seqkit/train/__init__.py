"""Training: the trainer, optimizers with parameter groups, checkpoints, metrics."""
