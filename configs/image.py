"""LRA Image with S5: grayscale CIFAR-10 as sequences of 1024 pixels, 10 classes.

Task ``classify`` on ``data.source="image"``: CIFAR-10 from TFDS ``cifar10``
(``seqjax.data.lra_image``), converted to gray as LRA did, read row by row, each
pixel a normalised float ``(p/255 - 122.6/255) / (61/255)`` through a linear
encoder (the S4/S5 dataloaders' normalisation); 45K/5K/10K train/validation/test.
Prepare the dataset once (``tfds build cifar10`` or
``'data.options={"download": true}'``).

The default is the S5 paper's Image setting, read from the authors' run script
(lindermanlab/S5 ``bin/run_experiments/run_lra_cifar.sh``; the paper lists its
hyperparameters in Table 11): 6 layers, H = 512, P = 384, J = 3 blocks, ``C``
lecun-normal, ``clip_eigs``, bidirectional, BatchNorm (pre-norm), mean pooling,
dropout 0.1, batch 50, 250 epochs with a 1-epoch warmup then cosine decay to 0,
learning rate 4.5e-3 (``lr_factor`` 4.5 × SSM rate), SSM learning rate 1e-3, weight
decay 0.07, AdamW (0.9, 0.999), no clipping. 250 epochs of 45,000 / 50 = 900 steps
are 225,000 steps; evaluation on the 5,000 validation images once per epoch.

Target: S5's LRA Image (grayscale) test accuracy, **88.00%** ("Simplified State
Space Layers for Sequence Modeling", Smith, Warrington & Linderman, ICLR 2023,
Table 1). Not the 90.10% of colour sCIFAR, a different task.

Differences from the reference: seqjax's two-sub-block pre-norm block (S5, then a
GLU channel mixer with its own norm) instead of S5 → GELU → half-GLU; BatchNorm
momentum 0.9 instead of 0.95; ``opt_config=BfastandCdecay`` put ``B̃`` at the global
rate with weight decay, here ``B̃`` is in the SSM group.

Run:
    seqjax train --config configs/image.py --workdir runs/image

Variants (``configs/image.py:tiny``): ``tiny`` trains a 2-layer S5 of width 64 on
the first 4,000 training images for 200 steps — minutes on a CPU once the TFDS
dataset is prepared.
"""

from seqjax.config import (
    Config,
    DataConfig,
    ModelConfig,
    OptimConfig,
    TrainConfig,
)

EPOCHS = 250
STEPS_PER_EPOCH = 45_000 // 50


def get_config(variant: str = "default") -> Config:
    config = Config(
        task="classify",
        name="image-s5",
        model=ModelConfig(
            mixer="s5",
            mixer_options={
                "state_size": 384,
                "blocks": 3,
                "c_init": "lecun_normal",
                "clip_eigs": True,
                "bidirectional": True,
            },
            features=512,
            depth=6,
            mlp="glu",
            mlp_options={"use_out_proj": False},
            norm="batchnorm",
            dropout=0.1,
            pooling="mean",
        ),
        data=DataConfig(source="image", seq_len=1024, batch_size=50, options={}),
        optim=OptimConfig(
            learning_rate=4.5e-3,
            ssm_learning_rate=1e-3,
            weight_decay=0.07,
            b1=0.9,
            b2=0.999,
            grad_clip_norm=None,
            schedule="warmup_cosine",
            warmup_steps=STEPS_PER_EPOCH,
        ),
        train=TrainConfig(
            steps=EPOCHS * STEPS_PER_EPOCH,
            log_every=100,
            eval_every=STEPS_PER_EPOCH,
            eval_batches=100,
            checkpoint_every=STEPS_PER_EPOCH,
            best_metric="eval/accuracy",
            best_mode="max",
        ),
    )
    if variant == "tiny":
        config.name = "image-tiny"
        config.model.mixer_options = {
            "state_size": 16,
            "blocks": 2,
            "c_init": "lecun_normal",
            "clip_eigs": True,
            "bidirectional": True,
        }
        config.model.features = 64
        config.model.depth = 2
        config.model.dropout = 0.0
        config.data.batch_size = 32
        config.data.options = {"train_examples": 4_000, "eval_examples": 512}
        config.optim.learning_rate = 5e-3
        config.optim.ssm_learning_rate = None
        config.optim.weight_decay = 0.01
        config.optim.warmup_steps = 10
        config.train.steps = 200
        config.train.log_every = 20
        config.train.eval_every = 100
        config.train.eval_batches = 16
        config.train.checkpoint_every = 100
        config.train.progress = False
    elif variant != "default":
        raise ValueError(f"unknown variant {variant!r}; valid: default, tiny")
    return config
