"""N-delayed-match-to-sample (N-DMS) with one readout head per N and a curriculum.

Does the bit N - 1 steps before the last one equal the last bit? One answer per
active N, read at the last step (``seqjax.data.parity``; task ``"dms"`` in
``seqjax.train.synthetic``, whose docstring explains how the curriculum advances
inside the training state and survives checkpoints). Metrics: ``eval/accuracy``
(mean over the active heads), ``eval/accuracy_n_max`` and ``eval/n_max``, the
largest N trained so far.

Run:
    seqjax train --config configs/dms.py --workdir runs/dms

Variants (``configs/dms.py:NAME``), from Khajehabdollahi, Zeraati et al.,
"Emergent mechanisms for long timescales depend on training curriculum and affect
performance in memory tasks" (ICLR 2024); the same settings as
``configs/parity.py``:

* ``default``: the multi-head curriculum (``[2] → [2, 3] → …``, heads up to N =
  100) with the paper's gated-RNN control settings (Adam 1e-3, batch 64, 300 steps
  per epoch, 98 % on the last 50 batches of an epoch to advance) and one 500-unit
  ParaGRU layer. Target: the multi-head reach, every N up to the 100 allocated heads
  (UNVERIFIED secondary source, ``/work/shared/notes/continual_and_memory.md`` §2.3).
* ``single``: the single-head curriculum (``[2] → [3] → …``). Target: single-head
  N-DMS reach about N = 90 (UNVERIFIED, secondary source).
* ``fixed``: no curriculum, one head at N = 16 from the start.
* ``tiny``: width 64, heads up to N = 8, 10-step epochs measured on their last 5
  batches, constant 3e-3, 200 steps: the curriculum reaches N = 3 with 89-93 %
  accuracy on the active heads (two seeds) in well under a minute on a CPU (chance
  50 %).
"""

from seqjax.train.config import (
    Config,
    DataConfig,
    ModelConfig,
    OptimConfig,
    TrainConfig,
)

TASK = "dms"


def get_config(variant: str = "default") -> Config:
    config = Config(
        task=TASK,
        name=f"{TASK}-{variant}",
        model=ModelConfig(
            mixer="paragru",
            features=500,
            depth=1,
            mlp="none",
            norm="rmsnorm",
        ),
        data=DataConfig(
            batch_size=64,
            eval_batch_size=256,
            options={
                "curriculum": "multi",
                "start": 2,
                "max_n": 100,
                "threshold": 0.98,
                "epoch_steps": 300,
                "measure_steps": 50,
            },
        ),
        optim=OptimConfig(
            learning_rate=1e-3,
            weight_decay=0.0,
            b2=0.999,
            schedule="constant",
            warmup_steps=0,
            grad_clip_norm=None,
        ),
        train=TrainConfig(
            steps=100 * 300,
            log_every=50,
            eval_every=300,
            eval_batches=10,
            checkpoint_every=300,
            best_metric="eval/n_max",
            best_mode="max",
        ),
    )
    options = config.data.options
    if variant == "single":
        options["curriculum"] = "single"
    elif variant == "fixed":
        options["curriculum"] = "none"
        options["ns"] = [16]
        del options["max_n"], options["threshold"]
    elif variant == "tiny":
        config.model.features = 64
        config.data.eval_batch_size = None
        options.update(max_n=8, epoch_steps=10, measure_steps=5)
        config.optim.learning_rate = 3e-3
        config.train.steps = 200
        config.train.log_every = 20
        config.train.eval_every = 100
        config.train.eval_batches = 4
        config.train.checkpoint_every = 100
        config.train.progress = False
    elif variant != "default":
        raise ValueError(
            f"unknown variant {variant!r}; valid: default, single, fixed, tiny"
        )
    return config
