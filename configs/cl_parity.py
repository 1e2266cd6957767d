"""A sequence-native stream: N-parity with N growing from task to task.

Task ``k`` of ``cl.stream="parity_stream"`` labels a random bit sequence of
``data.seq_len`` steps with the parity of its last ``N = 2 + k`` bits
(``seqjax.data.parity``'s convention, the last bit included): the same inputs, a new
rule each task, and a rule that needs memory over longer and longer spans. One shared
2-class head (domain-incremental; ``cl.setting=task`` gives each task its own). It
needs no data files. A nonlinear recurrence is what solves parity (ParaRNN's
synthetic tasks), hence the ParaGRU.

Target: none from a paper; the question it asks is which strategy keeps N=2 solved
after learning N=6.

Run:
    seqjax cl --config configs/cl_parity.py --workdir runs/cl-parity cl.strategy=ewc

Variants (``configs/cl_parity.py:tiny``): ``tiny`` uses sequences of 16 bits, 4 tasks
(N = 2..5) of 150 steps: a couple of minutes on a laptop CPU.
"""

from seqjax.config import (
    Config,
    ContinualConfig,
    DataConfig,
    ModelConfig,
    OptimConfig,
    TrainConfig,
)


def get_config(variant: str = "default") -> Config:
    tasks, steps = 5, 2000
    config = Config(
        name="cl-parity",
        model=ModelConfig(
            mixer="paragru",
            mixer_options={"heads": 4},
            features=64,
            depth=1,
            pooling="last",
        ),
        data=DataConfig(seq_len=64, batch_size=64, options={"sizes": [16384, 1024]}),
        optim=OptimConfig(
            learning_rate=3e-3,
            weight_decay=0.0,
            b2=0.999,
            schedule="constant",
            warmup_steps=0,
            grad_clip_norm=1.0,
        ),
        train=TrainConfig(
            steps=tasks * steps,
            log_every=50,
            eval_every=500,
            eval_batches=16,
            checkpoint_every=500,
            best_metric="",
        ),
        cl=ContinualConfig(
            stream="parity_stream",
            setting="domain",
            num_tasks=tasks,
            steps_per_task=steps,
            strategy="naive",
        ),  # fmt: skip
    )
    if variant == "tiny":
        tasks, steps = 4, 150
        config.name = "cl-parity-tiny"
        config.model.features = 32
        config.model.mixer_options = {"heads": 2}
        config.data.seq_len = 16
        config.data.batch_size = 32
        config.data.options = {"sizes": [4096, 512]}
        config.cl.num_tasks = tasks
        config.cl.steps_per_task = steps
        config.train.steps = tasks * steps
        config.train.log_every = 25
        config.train.eval_every = steps
        config.train.eval_batches = 4
        config.train.checkpoint_every = steps
        config.train.progress = False
    elif variant != "default":
        raise ValueError(f"unknown variant {variant!r}; valid: default, tiny")
    return config
