"""LRA Path-X with S5: Pathfinder at 128 px, sequences of 16,384 pixels.

Task ``classify`` on ``data.source="pathx"``: our seeded Pathfinder generator
(``seqjax.data.pathfinder``) at 128 px with the release's "hard" setting (14
paddles per target path), 160K/20K/20K images, flattened to 16,384 pixels, each a
normalised float ``(p/255 - 0.5)/0.5`` through a linear encoder (S4/S5 dataloaders);
2 balanced classes. Generating 200K Path-X images takes hours on one core: set
``data.options["num_workers"]`` (processes) for the first run; the images are cached.

The default is the S5 paper's Path-X setting, read from the authors' run script
(lindermanlab/S5 ``bin/run_experiments/run_lra_pathx.sh``; the paper lists its
hyperparameters in Table 11): 6 layers, H = 128, P = 256, J = 16 blocks, ``C``
complex-normal, ``Δ`` initialised in [1e-4, 1e-1], bidirectional, BatchNorm
(pre-norm, momentum 0.9), mean pooling, no dropout, batch 32, 75 epochs with a
1-epoch warmup then cosine decay to 0, learning rate 1.8e-3 (``lr_factor`` 3 × SSM
rate), SSM learning rate 6e-4, weight decay 0.06, AdamW (0.9, 0.999), no clipping.
75 epochs of 160,000 / 32 = 5,000 steps are 375,000 steps; evaluation on the 20,000
validation images once per epoch.

Target: S5's Path-X test accuracy, **98.58%** ("Simplified State Space Layers for
Sequence Modeling", Smith, Warrington & Linderman, ICLR 2023, Table 1); our images
come from our own generator, not the LRA release.

Differences from the reference: seqjax's two-sub-block pre-norm block (S5, then a
GLU channel mixer with its own norm) instead of S5's S5 → GELU → half-GLU layer;
``opt_config=BandCdecay`` also decayed ``B̃`` (at the SSM rate), which here is in the
SSM group without weight decay.

Run:
    seqjax train --config configs/pathx.py --workdir runs/pathx \\
        'data.options={"num_workers": 16}'

Variants (``configs/pathx.py:tiny``): 16,384 steps per sequence do not fit a CPU
budget of minutes, so ``tiny`` is ``configs/pathfinder.py:tiny`` run through the
``pathx`` source: 32 px "easy" images with 3-paddle target paths, a 3-layer S5 of
width 64. (With Path-X's own ``C`` complex-normal and ``Δ`` from 1e-4 the same
small model stayed at chance, 50.8%, in its 200 steps.) It checks the pipeline, not
Path-X's length.
"""

from seqjax.config import (
    Config,
    DataConfig,
    ModelConfig,
    OptimConfig,
    TrainConfig,
)

EPOCHS = 75
STEPS_PER_EPOCH = 160_000 // 32


def get_config(variant: str = "default") -> Config:
    config = Config(
        task="classify",
        name="pathx-s5",
        model=ModelConfig(
            mixer="s5",
            mixer_options={
                "state_size": 256,
                "blocks": 16,
                "c_init": "complex_normal",
                "dt_min": 1e-4,
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
            source="pathx",
            seq_len=128 * 128,
            batch_size=32,
            options={"sizes": [160_000, 20_000, 20_000], "difficulty": "hard"},
        ),
        optim=OptimConfig(
            learning_rate=1.8e-3,
            ssm_learning_rate=6e-4,
            weight_decay=0.06,
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
            eval_batches=625,
            checkpoint_every=STEPS_PER_EPOCH,
            best_metric="eval/accuracy",
            best_mode="max",
        ),
    )
    if variant == "tiny":
        config.name = "pathx-tiny"
        config.model.mixer_options = {
            "state_size": 64,
            "blocks": 4,
            "c_init": "trunc_standard_normal",
            "bidirectional": True,
        }
        config.model.features = 64
        config.model.depth = 3
        config.model.dropout = 0.0
        config.data.seq_len = 32 * 32
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
