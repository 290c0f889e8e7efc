"""Training: recipes, the trainer, vmapped sweeps, optimizers with parameter groups,
device meshes, several processes, checkpoints, metrics."""

from ._checkpoint import (
    CheckpointError as CheckpointError,
    load_checkpoint as load_checkpoint,
    remove_temporaries as remove_temporaries,
    save_checkpoint as save_checkpoint,
)
from ._distributed import init_distributed as init_distributed
from ._logging import MetricsLog as MetricsLog, Progress as Progress
from ._loop import (
    evaluate as evaluate,
    evaluate_run as evaluate_run,
    load_run as load_run,
    make_train_step as make_train_step,
    train as train,
)
from ._mesh import (
    make_mesh as make_mesh,
    parse_mesh as parse_mesh,
    shard_batch as shard_batch,
    shard_params as shard_params,
)
from ._optim import (
    adamw_cosine as adamw_cosine,
    cosine_warmup as cosine_warmup,
    make_optimizer as make_optimizer,
    param_labels as param_labels,
)
from ._recipe import (
    Built as Built,
    DataConfig as DataConfig,
    ModelConfig as ModelConfig,
    OptimizerConfig as OptimizerConfig,
    Recipe as Recipe,
    RecipeError as RecipeError,
    ScheduleConfig as ScheduleConfig,
    TrainerConfig as TrainerConfig,
    init_key as init_key,
    override as override,
    recipe_from_dict as recipe_from_dict,
    recipe_to_dict as recipe_to_dict,
    step_key as step_key,
)
from ._sweep import (
    SweepMember as SweepMember,
    make_sweep_step as make_sweep_step,
    plot_sweep as plot_sweep,
    sweep as sweep,
    sweep_members as sweep_members,
    sweep_table as sweep_table,
)
from ._trime import trime_batch_loss as trime_batch_loss, trime_loss as trime_loss
