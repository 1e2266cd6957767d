"""Permuted MNIST, domain-incremental: one recurrent classifier, 10 pixel permutations.

A continual-learning stream (``seqjax.cl.streams``, ``cl.stream="permuted_mnist"``):
task ``k`` is MNIST under its own seeded permutation of the 784 pixels (every task
permuted), the same 10 digits in every task and one shared head (domain-incremental;
``cl.setting=task`` gives each task its own 10 output units). The images are read as
sequences: pixel by pixel (``order="pixels"``, T=784, one gray level per step) here,
row by row (T=28, 28 pixels per step) in ``tiny``. The strategy is ``cl.strategy``
(``naive``, ``joint``, ``cumulative``, ``replay``, ``ewc``, ``si``, ``lwf``,
``agem``) with ``cl.strategy_options``; the model is a ParaGRU classifier trained by
Adam at a constant rate, as the continual-learning literature trains its baselines.

Target: the ranking of "Three scenarios for continual learning" (van de Ven & Tolias,
2019; permuted MNIST, 10 tasks, domain-incremental, an MLP with 2 x 1000 units):
joint training near the top, EWC/SI well above fine-tuning, replay close to joint
(``experiments/cl_benchmarks.py`` writes the table with the published numbers).

Run:
    seqjax cl --config configs/cl_permuted_mnist.py --workdir runs/cl-pmnist \\
        cl.strategy=ewc data.options='{"mnist_dir": "DIR", "order": "pixels"}'

Variants (``configs/cl_permuted_mnist.py:tiny``): ``tiny`` carves train and test out
of the 10,000 ``t10k`` images (8,000 / 2,000; ``splits="t10k"``), so a folder with the
two ``t10k`` idx files is enough (``SEQJAX_MNIST_DIR``); 5 tasks of 150 steps of 32
rows each, read row by row, a width-32 ParaGRU: a few minutes on a laptop CPU.
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
    tasks, steps = 10, 2000
    config = Config(
        name="cl-permuted-mnist",
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
            stream="permuted_mnist",
            setting="domain",
            num_tasks=tasks,
            steps_per_task=steps,
            strategy="naive",
        ),  # fmt: skip
    )
    if variant == "tiny":
        tasks, steps = 5, 150
        config.name = "cl-permuted-mnist-tiny"
        config.model.features = 32
        config.model.depth = 1
        config.model.mixer_options = {"heads": 2}
        config.data.seq_len = 28
        config.data.batch_size = 32
        config.data.options = {"order": "rows", "splits": "t10k"}
        config.optim.learning_rate = 3e-3
        config.cl.num_tasks = tasks
        config.cl.steps_per_task = steps
        config.cl.eval_examples = 500
        config.train.steps = tasks * steps
        config.train.log_every = 25
        config.train.eval_every = steps
        config.train.eval_batches = 4
        config.train.checkpoint_every = steps
        config.train.progress = False
    elif variant != "default":
        raise ValueError(f"unknown variant {variant!r}; valid: default, tiny")
    return config
