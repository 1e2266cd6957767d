"""N-delayed-match-to-sample (N-DMS) with one readout head per N and a curriculum.

Does the bit N - 1 steps before the last one equal the last bit? One answer per
active N, read at the last step (``seqjax.data.parity``; task ``"dms"`` in
``seqjax.tasks.synthetic``, whose docstring explains how the curriculum advances
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
  (UNVERIFIED secondary source).
* ``single``: the single-head curriculum (``[2] → [3] → …``). Target: single-head
  N-DMS reach about N = 90 (UNVERIFIED, secondary source).
* ``fixed``: no curriculum, one head at N = 16 from the start.
* ``tiny``: width 64, heads up to N = 8, 10-step epochs measured on their last 5
  batches, constant 3e-3, 200 steps: the curriculum reaches N = 3 with 89-93 %
  accuracy on the active heads (two seeds) in well under a minute on a CPU (chance
  50 %).
"""

import pathlib

from seqjax.config import Config, load_config

TASK = "dms"


def get_config(variant: str = "default") -> Config:
    """``configs/parity.py``'s settings, variant for variant, on the DMS task."""
    config = load_config(pathlib.Path(__file__).with_name("parity.py"), variant)
    config.task = TASK
    config.name = f"{TASK}-{variant}"
    return config
