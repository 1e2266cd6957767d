"""LRA Text with S5: IMDB sentiment from raw bytes, up to 4096 per review.

Task ``classify`` on ``data.source="text"``: IMDB reviews from TFDS
``imdb_reviews`` (``seqjax.data.lra_text``), byte tokens (259 ids), the first 4096
bytes of each review, 2 classes. Validation is 2,500 reviews held out of the
25,000 training reviews (LRA and S5 validated on the test set; we do not), so
training sees 22,500. Prepare the dataset once (``tfds build imdb_reviews`` or
``'data.options={"download": true}'``) and point ``data.tfds_data_dir`` at it if it
is not in TFDS's default folder.

The default is the S5 paper's Text setting, read from the authors' run script
(lindermanlab/S5 ``bin/run_experiments/run_lra_imdb.sh``; the paper lists its
hyperparameters in Table 11): 6 layers, H = 256, P = 192, J = 12 blocks, ``C``
lecun-normal, bidirectional, BatchNorm (pre-norm), mean pooling, dropout 0.1,
batch 50, 35 epochs, no warmup, cosine decay to 0, learning rate 4e-3 (``lr_factor``
4 × SSM rate), SSM learning rate 1e-3, weight decay 0.07, AdamW (0.9, 0.999), no
clipping. 35 epochs of 22,500 / 50 = 450 steps are 15,750 steps (S5: 25,000 / 50 =
500 per epoch); evaluation on the 2,500 validation reviews once per epoch.

Target: S5's Text test accuracy, **89.31%** ("Simplified State Space Layers for
Sequence Modeling", Smith, Warrington & Linderman, ICLR 2023, Table 1).

Differences from the reference: S5's tokens were the characters of a vocabulary
built from the training set (135 ids), ours are the 256 bytes; seqjax's
two-sub-block pre-norm block (S5, then a GLU channel mixer ``σ(W_g x) ⊙ W_v x``)
instead of S5 → GELU → half-GLU2; BatchNorm momentum 0.9 instead of 0.95; the
script's ``dt_global`` put ``log Δ`` at the global rate, here it is in the SSM group.

Run:
    seqjax train --config configs/text.py --workdir runs/text

Variants (``configs/text.py:tiny``): ``tiny`` keeps the first 256 bytes of 4,000
training reviews, a 2-layer S5 of width 64, 200 steps — minutes on a CPU once the
TFDS dataset is prepared.
"""

from seqjax.config import (
    Config,
    DataConfig,
    ModelConfig,
    OptimConfig,
    TrainConfig,
)

EPOCHS = 35
STEPS_PER_EPOCH = 22_500 // 50


def get_config(variant: str = "default") -> Config:
    config = Config(
        task="classify",
        name="text-s5",
        model=ModelConfig(
            mixer="s5",
            mixer_options={
                "state_size": 192,
                "blocks": 12,
                "c_init": "lecun_normal",
                "bidirectional": True,
            },
            features=256,
            depth=6,
            mlp="glu",
            mlp_options={"use_out_proj": False},
            norm="batchnorm",
            dropout=0.1,
            pooling="mean",
        ),
        data=DataConfig(source="text", seq_len=4096, batch_size=50, options={}),
        optim=OptimConfig(
            learning_rate=4e-3,
            ssm_learning_rate=1e-3,
            weight_decay=0.07,
            b1=0.9,
            b2=0.999,
            grad_clip_norm=None,
            schedule="warmup_cosine",
            warmup_steps=0,
        ),
        train=TrainConfig(
            steps=EPOCHS * STEPS_PER_EPOCH,
            log_every=50,
            eval_every=STEPS_PER_EPOCH,
            eval_batches=50,
            checkpoint_every=STEPS_PER_EPOCH,
            best_metric="eval/accuracy",
            best_mode="max",
        ),
    )
    if variant == "tiny":
        config.name = "text-tiny"
        config.model.mixer_options = {
            "state_size": 16,
            "blocks": 2,
            "c_init": "lecun_normal",
            "bidirectional": True,
        }
        config.model.features = 64
        config.model.depth = 2
        config.model.dropout = 0.0
        config.data.seq_len = 256
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
