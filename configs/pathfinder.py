"""LRA Pathfinder with S5: are the two markers joined by one dashed path? (32 px)

Task ``classify`` on ``data.source="pathfinder"``: our seeded Pathfinder generator
(``seqjax.data.pathfinder``, the release's "hard" setting: 14 paddles per target
path at 32 px), 160K/20K/20K images (the 80/10/10 split S4 and S5 made of the 200K
released images), flattened to 1024 pixels, each one normalised float ``(p/255 -
0.5)/0.5`` through a linear encoder as in the S4/S5 dataloaders; 2 balanced
classes.

The default is the S5 paper's Pathfinder setting, read from the authors' run script
(lindermanlab/S5 ``bin/run_experiments/run_lra_pathfinder.sh``; the paper lists its
hyperparameters in Table 11): 6 layers, H = 192, P = 256, J = 8 blocks, ``C``
truncated-normal, bidirectional, BatchNorm (pre-norm; the script's momentum 0.9 is
seqjax's default), mean pooling, dropout 0.05, batch 64, 200 epochs with a 1-epoch
warmup then cosine decay to 0, learning rate 4.5e-3 (``lr_factor`` 5 × SSM rate),
SSM learning rate 9e-4, weight decay 0.03, AdamW (0.9, 0.999), no clipping,
"standard" parameter groups. 200 epochs of 160,000 / 64 = 2,500 steps are 500,000
steps; evaluation on the 20,000 validation images once per epoch.

Target: S5's Pathfinder test accuracy, **95.33%** ("Simplified State Space Layers
for Sequence Modeling", Smith, Warrington & Linderman, ICLR 2023, Table 1). Our
images come from our own generator, not the LRA release, so the number is a target,
not a like-for-like comparison.

Difference from the reference: seqjax's block is pre-norm residual with two
sub-blocks (S5, then a GLU channel mixer ``σ(W_g x) ⊙ W_v x`` with its own norm);
S5's layer is one sub-block, S5 → GELU → half-GLU gate ``x ⊙ σ(W x)``.

Run:
    seqjax train --config configs/pathfinder.py --workdir runs/pathfinder

Variants (``configs/pathfinder.py:tiny``): ``tiny`` is two to three minutes on a
2-core CPU (about ten seconds of it spent once to generate and cache 6,000 + 500 32
px images): a 3-layer S5 of width 64 (P = 64, J = 4), 200 steps of 32. Its images
are easier than any LRA difficulty — "easy" settings with target paths of 3 paddles
instead of 6 (``geometry={"contour_length": 3, "distractor_length": 2}``) — because
with the published lengths a model this small stays at chance for far more than 200
steps (we measured 50-53% with 6 paddles); with 3 paddles it reached 74% (62% with
another training seed).
"""

from seqjax.config import (
    Config,
    DataConfig,
    ModelConfig,
    OptimConfig,
    TrainConfig,
)

EPOCHS = 200
STEPS_PER_EPOCH = 160_000 // 64


def get_config(variant: str = "default") -> Config:
    config = Config(
        task="classify",
        name="pathfinder-s5",
        model=ModelConfig(
            mixer="s5",
            mixer_options={
                "state_size": 256,
                "blocks": 8,
                "c_init": "trunc_standard_normal",
                "bidirectional": True,
            },
            features=192,
            depth=6,
            mlp="glu",
            mlp_options={"use_out_proj": False},
            norm="batchnorm",
            dropout=0.05,
            pooling="mean",
        ),
        data=DataConfig(
            source="pathfinder",
            seq_len=1024,
            batch_size=64,
            options={"sizes": [160_000, 20_000, 20_000], "difficulty": "hard"},
        ),
        optim=OptimConfig(
            learning_rate=4.5e-3,
            ssm_learning_rate=9e-4,
            weight_decay=0.03,
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
            eval_batches=313,
            checkpoint_every=STEPS_PER_EPOCH,
            best_metric="eval/accuracy",
            best_mode="max",
        ),
    )
    if variant == "tiny":
        config.name = "pathfinder-tiny"
        config.model.mixer_options = {
            "state_size": 64,
            "blocks": 4,
            "c_init": "trunc_standard_normal",
            "bidirectional": True,
        }
        config.model.features = 64
        config.model.depth = 3
        config.model.dropout = 0.0
        config.data.batch_size = 32
        config.data.options = {
            "sizes": [6_000, 500, 0],
            "difficulty": "easy",
            "geometry": {"contour_length": 3, "distractor_length": 2},
        }
        config.optim.learning_rate = 1e-2
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
