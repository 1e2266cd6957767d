"""LRA Retrieval with S5: do two AAN papers cite each other? Bytes, 4000 per paper.

Task ``retrieval``: the ACL Anthology Network document pairs of the LRA release,
read (streamed; the train file is about 8.5 GB) from
``new_aan_pairs.{train,eval,test}.tsv`` in ``data.options["data_dir"]`` (here
``$SEQJAX_AAN_DIR``, else ``lra_release/tsv_data``; ``seqjax.data.lra_retrieval``),
the first 4000 bytes of each paper, 2 classes.
Both papers go through one shared S5 encoder; LRA's head classifies
``[u, v, u ⊙ v, u − v]`` (``seqjax.nn.models.DualEncoder``).

The default is the S5 paper's Retrieval setting, read from the authors' run script
(lindermanlab/S5 ``bin/run_experiments/run_lra_aan.sh``; the paper lists its
hyperparameters in Table 11): 6 layers, H = 128, P = 256, J = 16 blocks, ``C``
truncated-normal, bidirectional, BatchNorm (pre-norm), mean pooling, no dropout,
batch 32, 20 epochs with a 1-epoch warmup then cosine decay to 0, learning rate
2e-3 (``lr_factor`` 2 × SSM rate), SSM learning rate 1e-3, weight decay 0.05, AdamW
(0.9, 0.999), no clipping. The release's training file has 147,086 pairs: 20 epochs
of 147,086 // 32 = 4,596 steps are 91,920 steps; evaluation on the release's
``eval`` file (18,090 pairs, 566 batches) once per epoch.

Target: S5's Retrieval test accuracy, **91.40%** ("Simplified State Space Layers
for Sequence Modeling", Smith, Warrington & Linderman, ICLR 2023, Table 1).

Differences from the reference: S5's tokens were the characters of a vocabulary
built from the training file, ours are the 256 bytes of LRA's raw text fields; S5's
head was ``Dense → GELU → Dense`` on the four pair features, seqjax's is LRA's
two-hidden-layer ReLU MLP; seqjax's two-sub-block pre-norm block (S5, then a GLU
channel mixer) instead of S5 → GELU → half-GLU; BatchNorm momentum 0.9 instead of
0.95; the script's ``dt_global`` put ``log Δ`` at the global rate.

Run:
    seqjax train --config configs/retrieval.py --workdir runs/retrieval \\
        'data.options={"data_dir": "lra_release/tsv_data"}'

Variants (``configs/retrieval.py:tiny``): ``tiny`` keeps 256 bytes per paper and
the first 4,000 training pairs, a 2-layer S5 of width 64, 200 steps (set
``data_dir`` the same way).
"""

import os

from seqjax.config import (
    Config,
    DataConfig,
    ModelConfig,
    OptimConfig,
    TrainConfig,
)

EPOCHS = 20
STEPS_PER_EPOCH = 147_086 // 32
DATA_DIR = os.environ.get("SEQJAX_AAN_DIR", "lra_release/tsv_data")


def get_config(variant: str = "default") -> Config:
    config = Config(
        task="retrieval",
        name="retrieval-s5",
        model=ModelConfig(
            mixer="s5",
            mixer_options={
                "state_size": 256,
                "blocks": 16,
                "c_init": "trunc_standard_normal",
                "bidirectional": True,
            },
            features=128,
            depth=6,
            mlp="glu",
            mlp_options={"use_out_proj": False},
            norm="batchnorm",
            dropout=0.0,
            pooling="mean",
        ),
        data=DataConfig(
            source="aan",
            seq_len=4000,
            batch_size=32,
            options={"data_dir": DATA_DIR},
        ),
        optim=OptimConfig(
            learning_rate=2e-3,
            ssm_learning_rate=1e-3,
            weight_decay=0.05,
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
            eval_batches=566,
            checkpoint_every=STEPS_PER_EPOCH,
            best_metric="eval/accuracy",
            best_mode="max",
        ),
    )
    if variant == "tiny":
        config.name = "retrieval-tiny"
        config.model.mixer_options = {
            "state_size": 16,
            "blocks": 2,
            "c_init": "trunc_standard_normal",
            "bidirectional": True,
        }
        config.model.features = 64
        config.model.depth = 2
        config.data.seq_len = 256
        config.data.options = {
            "data_dir": DATA_DIR,
            "train_examples": 4_000,
            "eval_examples": 512,
        }
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
