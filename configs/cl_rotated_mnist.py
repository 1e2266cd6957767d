"""Rotated MNIST, domain-incremental: task ``k`` rotates every image by ``180 k / N``
degrees (``cl.stream="rotated_mnist"``); otherwise ``configs/cl_permuted_mnist.py``,
variant for variant.

Run:
    seqjax cl --config configs/cl_rotated_mnist.py --workdir runs/cl-rmnist \\
        cl.strategy=ewc data.options='{"mnist_dir": "DIR", "order": "pixels"}'

Variants (``configs/cl_rotated_mnist.py:tiny``): ``tiny`` as permuted MNIST's.
"""

import pathlib

from seqjax.config import Config, load_config


def get_config(variant: str = "default") -> Config:
    path = pathlib.Path(__file__).with_name("cl_permuted_mnist.py")
    config = load_config(path, variant)
    config.cl.stream = "rotated_mnist"
    config.name = config.name.replace("permuted", "rotated")
    return config
