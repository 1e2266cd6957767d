"""The very small language-model run the trainer tests share (seconds on a CPU)."""

from seqjax import config as config_lib

BASE = {
    "model.mixer": "paragru",
    "model.mixer_options": {"heads": 2},
    "model.features": 16,
    "model.depth": 1,
    "model.conv_width": 2,
    "data.kind": "prose",
    "data.max_bytes": 60_000,
    "data.seq_len": 32,
    "data.batch_size": 8,
    "optim.learning_rate": 1e-2,
    "optim.warmup_steps": 2,
    "train.log_every": 1,
    "train.eval_every": 4,
    "train.eval_batches": 2,
    "train.checkpoint_every": 2,
    "train.progress": False,
    "train.sample_prompt": "",
    "mesh.data": 1,
}


def tiny_lm(steps: int, **overrides) -> config_lib.Config:
    """``BASE`` with ``train.steps=steps`` and ``overrides`` (``key=value`` pairs
    as a dict) applied."""
    return config_lib.apply_overrides(
        config_lib.Config(), {**BASE, "train.steps": steps, **overrides}
    )
