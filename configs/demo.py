"""The main job of ``make demo``: a small ParaGRU byte-level language model.

Trains a 2-block ParaGRU model (width 128) on the built-in corpus (the Python standard
library's code and its help topics), evaluates bits per byte on held-out files, saves
checkpoints, samples from a prompt and plots the loss curves — in a few minutes on a
laptop CPU.

Run:
    seqjax train --config configs/demo.py --workdir runs/demo

Variants (``configs/demo.py:tiny``): ``tiny`` runs in seconds (tests).
Targets no paper number; it is the smallest complete run of the training system.
"""

from seqjax.config import (
    Config,
    DataConfig,
    ModelConfig,
    OptimConfig,
    TrainConfig,
)


def get_config(variant: str = "default") -> Config:
    config = Config(
        task="lm",
        name="demo",
        model=ModelConfig(
            mixer="paragru",
            mixer_options={"heads": 4},
            features=128,
            depth=2,
            mlp="glu",
            conv_width=4,
        ),
        data=DataConfig(
            source="builtin",
            kind="both",
            seq_len=256,
            batch_size=16,
            max_bytes=4_000_000,
        ),  # fmt: skip
        optim=OptimConfig(learning_rate=3e-3, warmup_steps=50, weight_decay=0.1),
        train=TrainConfig(
            steps=600,
            log_every=10,
            eval_every=200,
            eval_batches=8,
            checkpoint_every=100,
            sample_prompt="def ",
            sample_tokens=200,
        ),
    )
    if variant == "tiny":
        config.model.features = 32
        config.model.depth = 1
        config.data.seq_len = 64
        config.data.batch_size = 8
        config.data.max_bytes = 300_000
        config.optim.warmup_steps = 2
        config.train.steps = 12
        config.train.log_every = 2
        config.train.eval_every = 6
        config.train.eval_batches = 2
        config.train.checkpoint_every = 4
        config.train.sample_tokens = 16
        config.train.progress = False
    elif variant != "default":
        raise ValueError(f"unknown variant {variant!r}; valid: default, tiny")
    return config
