"""Split CIFAR-10: five tasks of two classes, task-incremental by default.

A continual-learning stream (``cl.stream="split_cifar10"``) read through TFDS
``cifar10`` (``data.options["download"]=true`` lets TFDS fetch it once). Each RGB
image is a sequence of its 32 rows (96 features a step) by default, or of its 1,024
pixels (``order="pixels"``, 3 features). ``cl.setting=class`` is class-incremental.
The model is a ParaGRU classifier trained by Adam at a constant rate; the strategies
are those of ``seqjax.cl.strategies``.

Target: none reproduced yet; CIFAR streams are for users with the data (no CIFAR
copy is available offline here, so our tests use ``tfds.testing.mock_data``).

Run:
    seqjax cl --config configs/cl_split_cifar10.py --workdir runs/cl-cifar10 \\
        cl.strategy=replay

Variants (``configs/cl_split_cifar10.py:tiny``): ``tiny`` trains 5 tasks of 50 steps
on 1,000 images a task with a width-32 model (a smoke run, minutes on a CPU once the
data is there).
"""

from seqjax.config import (
    Config,
    ContinualConfig,
    DataConfig,
    ModelConfig,
    OptimConfig,
    TrainConfig,
)

STREAM, TASKS = "split_cifar10", 5


def get_config(variant: str = "default") -> Config:
    tasks, steps = TASKS, 2000
    config = Config(
        name=f"cl-{STREAM.replace('_', '-')}",
        model=ModelConfig(
            mixer="paragru",
            mixer_options={"heads": 4},
            features=256,
            depth=2,
            pooling="last",
        ),
        data=DataConfig(seq_len=32, batch_size=64, options={"order": "rows"}),
        optim=OptimConfig(
            learning_rate=1e-3,
            weight_decay=0.0,
            b2=0.999,
            schedule="constant",
            warmup_steps=0,
            grad_clip_norm=1.0,
        ),
        train=TrainConfig(
            steps=tasks * steps,
            log_every=50,
            eval_every=500,
            eval_batches=20,
            checkpoint_every=500,
            best_metric="",
        ),
        cl=ContinualConfig(
            stream=STREAM,
            setting="task",
            num_tasks=tasks,
            steps_per_task=steps,
            strategy="naive",
        ),  # fmt: skip
    )
    if variant == "tiny":
        steps = 50
        config.name += "-tiny"
        config.model.features = 32
        config.model.depth = 1
        config.model.mixer_options = {"heads": 2}
        config.data.batch_size = 32
        config.cl.steps_per_task = steps
        config.cl.train_examples = 1000
        config.cl.eval_examples = 200
        config.train.steps = tasks * steps
        config.train.eval_every = steps
        config.train.checkpoint_every = steps
        config.train.progress = False
    elif variant != "default":
        raise ValueError(f"unknown variant {variant!r}; valid: default, tiny")
    return config
