"""Split MNIST: five tasks of two digits each (0/1, 2/3, 4/5, 6/7, 8/9).

A continual-learning stream (``seqjax.cl.streams``, ``cl.stream="split_mnist"``),
task-incremental by default (the task id is given and each task's logits are masked
to its two digits); ``cl.setting=class`` makes it class-incremental (all ten units,
no task id), the hard scenario where regularisers fail and replay does not. Images
are read as sequences, pixel by pixel (T=784) here and row by row (T=28) in ``tiny``;
the model is a ParaGRU classifier trained by Adam at a constant rate.

Target: the task- and class-incremental split MNIST numbers of "Three scenarios for
continual learning" (van de Ven & Tolias, 2019; an MLP with 2 x 400 units):
``experiments/cl_benchmarks.py`` writes them beside ours.

Run:
    seqjax cl --config configs/cl_split_mnist.py --workdir runs/cl-split \\
        cl.strategy=si data.options='{"mnist_dir": "DIR", "order": "pixels"}'

Variants (``configs/cl_split_mnist.py:tiny``): ``tiny`` carves train and test out of
the 10,000 ``t10k`` images (``splits="t10k"``; ``SEQJAX_MNIST_DIR`` names a folder
with the two ``t10k`` idx files), 5 tasks of 100 steps of 32 rows, read row by row,
a width-32 ParaGRU: a couple of minutes on a laptop CPU.
"""

from seqjax.config import (
    Config,
    ContinualConfig,
    DataConfig,
    ModelConfig,
    OptimConfig,
    TrainConfig,
)


def get_config(variant: str = "default") -> Config:
    tasks, steps = 5, 1000
    config = Config(
        name="cl-split-mnist",
        model=ModelConfig(
            mixer="paragru",
            mixer_options={"heads": 4},
            features=128,
            depth=2,
            pooling="last",
        ),
        data=DataConfig(
            seq_len=784, batch_size=64, options={"order": "pixels"}, seed=0
        ),
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
            stream="split_mnist",
            setting="task",
            num_tasks=tasks,
            steps_per_task=steps,
            strategy="naive",
        ),  # fmt: skip
    )
    if variant == "tiny":
        tasks, steps = 5, 100
        config.name = "cl-split-mnist-tiny"
        config.model.features = 32
        config.model.depth = 1
        config.model.mixer_options = {"heads": 2}
        config.data.seq_len = 28
        config.data.batch_size = 32
        config.data.options = {"order": "rows", "splits": "t10k"}
        config.optim.learning_rate = 3e-3
        config.cl.num_tasks = tasks
        config.cl.steps_per_task = steps
        config.cl.eval_examples = 400
        config.train.steps = tasks * steps
        config.train.log_every = 25
        config.train.eval_every = steps
        config.train.eval_batches = 4
        config.train.checkpoint_every = steps
        config.train.progress = False
    elif variant != "default":
        raise ValueError(f"unknown variant {variant!r}; valid: default, tiny")
    return config
