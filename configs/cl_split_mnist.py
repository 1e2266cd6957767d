"""Split MNIST: five tasks of two digits each (0/1, 2/3, 4/5, 6/7, 8/9).

A continual-learning stream (``seqjax.cl.streams``, ``cl.stream="split_mnist"``),
task-incremental by default (the task id is given and each task's logits are masked
to its two digits); ``cl.setting=class`` makes it class-incremental (all ten units,
no task id), the hard scenario where regularisers fail and replay does not. Images
are read as sequences, pixel by pixel (T=784) here and row by row (T=28) in ``tiny``;
otherwise ``configs/cl_permuted_mnist.py``'s settings (a ParaGRU classifier trained
by Adam at a constant rate), variant for variant, with 5 tasks.

Target: the task- and class-incremental split MNIST numbers of "Three scenarios for
continual learning" (van de Ven & Tolias, 2019; an MLP with 2 x 400 units):
``experiments/cl_benchmarks.py`` writes them beside ours.

Run:
    seqjax cl --config configs/cl_split_mnist.py --workdir runs/cl-split \\
        cl.strategy=si data.options='{"mnist_dir": "DIR", "order": "pixels"}'

Variants (``configs/cl_split_mnist.py:tiny``): ``tiny`` carves train and test out of
the 10,000 ``t10k`` images (``splits="t10k"``; ``SEQJAX_MNIST_DIR`` names a folder
with the two ``t10k`` idx files), 5 tasks of 150 steps of 32 rows, read row by row,
a width-32 ParaGRU: a minute on a laptop CPU.
"""

import pathlib

from seqjax.config import Config, load_config

TASKS = 5


def get_config(variant: str = "default") -> Config:
    path = pathlib.Path(__file__).with_name("cl_permuted_mnist.py")
    config = load_config(path, variant)
    config.name = config.name.replace("permuted", "split")
    config.cl.stream = "split_mnist"
    config.cl.setting = "task"
    config.cl.num_tasks = TASKS
    config.train.steps = TASKS * config.cl.steps_per_task
    return config
