"""Set disjointness (JRT): name the one element two sets share.

``[1] A [2] B [3]``: the sets are disjoint but for one element of ``A`` planted in
``B``; the model outputs it at ``[3]`` (``seqjax.data.mqar``; loss and accuracy at
the answer position; task ``"set_disjointness"`` in ``seqjax.tasks.synthetic``). A
recurrent model must remember ``A`` while reading ``B``, so the order of a short and
a long set matters, and JRT-Prompt (the sets read twice) lets it see ``A`` again
after knowing ``B``.

Run:
    seqjax train --config configs/set_disjointness.py --workdir runs/setdisj

Variants (``configs/set_disjointness.py:NAME``), after Arora et al., "Just read
twice: closing the recall gap for recurrent language models" (2024), Section 3:

* ``default``: the short set first (|A| = 4, |B| = 16, vocabulary 64 — the
  generator's defaults; the JRT code's defaults are |A| = 4, |B| = 8), 100K
  training sequences, two one-head GLA layers of width 128 with a short convolution.
* ``long_first``: |A| = 16, |B| = 4: the harder order for a recurrent model.
* ``jrt``: ``long_first`` with JRT-Prompt (``jrt_repeats = 2``).
* ``tiny``: |A| = 4, |B| = 8, vocabulary 32, width 64, 200 steps at a constant
  6e-3: 60-85 % (two seeds) in under a minute on a CPU (chance 1/28; guessing an
  element of A, 1/4).

Target: the paper's set-disjointness comparison (short set first easier than long
set first for recurrent models; JRT-Prompt recovers the gap). The figure and its
values were not verified here (UNVERIFIED), so no number is quoted.
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
        task="set_disjointness",
        name=f"set_disjointness-{variant}",
        model=ModelConfig(
            mixer="gla",
            mixer_options={"num_heads": 1},
            features=128,
            depth=2,
            mlp="none",
            conv_width=4,
        ),
        data=DataConfig(
            batch_size=256,
            options={
                "first_size": 4,
                "second_size": 16,
                "vocab_size": 64,
                "num_train": 100_000,
                "num_eval": 2_048,
            },
        ),
        optim=OptimConfig(learning_rate=1e-3, warmup_steps=100, weight_decay=0.1),
        train=TrainConfig(
            steps=20 * 100_000 // 256,
            eval_every=500,
            eval_batches=8,
            checkpoint_every=500,
            best_metric="eval/accuracy",
            best_mode="max",
        ),
    )
    options = config.data.options
    if variant in ("long_first", "jrt"):
        options.update(first_size=16, second_size=4)
        if variant == "jrt":
            options["jrt_repeats"] = 2
    elif variant == "tiny":
        config.model.features = 64
        config.data.batch_size = 64
        options.update(
            first_size=4, second_size=8, vocab_size=32, num_train=20_000,
            num_eval=512,
        )  # fmt: skip
        config.optim = OptimConfig(
            learning_rate=6e-3, schedule="constant", warmup_steps=10
        )
        config.train.steps = 200
        config.train.log_every = 20
        config.train.eval_every = 100
        config.train.eval_batches = 8
        config.train.checkpoint_every = 100
        config.train.progress = False
    elif variant != "default":
        raise ValueError(
            f"unknown variant {variant!r}; valid: default, long_first, jrt, tiny"
        )
    return config
