"""Split CIFAR-100: ten tasks of ten classes (``cl.stream="split_cifar100"``);
otherwise ``configs/cl_split_cifar10.py``, variant for variant.

Run:
    seqjax cl --config configs/cl_split_cifar100.py --workdir runs/cl-cifar100 \\
        cl.strategy=replay

Variants (``configs/cl_split_cifar100.py:tiny``): ``tiny`` as split CIFAR-10's.
"""

import pathlib

from seqjax.config import Config, load_config


def get_config(variant: str = "default") -> Config:
    config = load_config(
        pathlib.Path(__file__).with_name("cl_split_cifar10.py"), variant
    )
    config.cl.stream = "split_cifar100"
    config.cl.num_tasks = 10
    config.train.steps = 10 * config.cl.steps_per_task
    config.name = config.name.replace("cifar10", "cifar100")
    return config
