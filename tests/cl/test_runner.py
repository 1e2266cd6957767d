"""Continual-learning runs end to end: the accuracy matrix, report and metrics; the
data each strategy trains on; exact resume after SIGKILL inside a task and between
tasks; one-line errors for bad input."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from seqjax import cli
from seqjax import config as config_lib
from seqjax.cl import metrics, runner
from seqjax.train import checkpoint as checkpoint_lib

ROOT = pathlib.Path(__file__).resolve().parents[2]
CONFIG = str(ROOT / "configs" / "cl_parity.py:tiny")
# A micro parity stream: 3 tasks (N = 2, 3, 4) of 12 steps on 8-bit sequences.
MICRO = [
    "data.seq_len=8",
    "model.features=8",
    "cl.num_tasks=3",
    "cl.steps_per_task=12",
    "data.batch_size=16",
    'data.options={"sizes": [256, 64]}',
    "train.checkpoint_every=4",
    "train.log_every=4",
]


def micro(*overrides) -> config_lib.Config:
    config = config_lib.load_config(CONFIG)
    return config_lib.apply_overrides(config, [*MICRO, *overrides])


def events(workdir):
    lines = (pathlib.Path(workdir) / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_a_run_fills_the_matrix_and_writes_the_report(tmp_path):
    result = runner.run(micro(), tmp_path)
    assert result.R.shape == (3, 3) and np.all(np.isfinite(result.R))
    assert np.all((0 <= result.R) & (result.R <= 1))
    assert result.b.shape == (3,)
    assert result.summary == pytest.approx(metrics.summary(result.R, result.b))
    assert result.task_names == ["N=2", "N=3", "N=4"]
    for name in ("cl_report.md", "cl_matrix.csv", "r_matrix.png", "task_accuracy.png"):
        assert (tmp_path / "cl" / name).stat().st_size > 0, name
    logged = events(tmp_path)
    ends = [e for e in logged if "cl/task" in e]
    assert [(e["step"], e["cl/task"]) for e in ends] == [(12, 0), (24, 1), (36, 2)]
    last = ends[-1]
    assert last["cl/acc"] == pytest.approx(result.summary["acc"])
    assert [last[f"cl/acc_task_{j}"] for j in range(3)] == pytest.approx(result.R[2])
    first = [e for e in logged if e["step"] == 0][0]
    assert [first[f"cl/random_acc_task_{j}"] for j in range(3)] == pytest.approx(
        result.b
    )
    # The matrix written to disk is the one returned.
    csv = np.loadtxt(tmp_path / "cl" / "cl_matrix.csv", delimiter=",", skiprows=1)
    np.testing.assert_array_equal(csv, result.R)


def test_each_task_of_a_run_is_a_trainer_phase_on_its_own_data(tmp_path):
    config, stream = runner.resolve(micro())
    assert config.train.steps == 3 * 12 and config.task == "continual"
    sizes = [len(e.train) for e in stream.experiences]
    current = [len(runner.training_records(stream, "current", k)) for k in range(3)]
    cumulative = [
        len(runner.training_records(stream, "cumulative", k)) for k in range(3)
    ]
    joint = [len(runner.training_records(stream, "joint", k)) for k in range(3)]
    assert current == sizes
    assert cumulative == list(np.cumsum(sizes))
    assert joint == [sum(sizes)] * 3
    # Task k's records carry its index and its labels.
    record = runner.training_records(stream, "cumulative", 1)[sizes[0]]
    assert int(record["task"]) == 1


def _cli(workdir, *overrides):
    cmd = [sys.executable, "-m", "seqjax.cli", "cl", "--config", CONFIG,
           "--workdir", str(workdir), *MICRO, *overrides]  # fmt: skip
    env = dict(os.environ, PYTHONUNBUFFERED="1", JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)  # one CPU device in the child
    return cmd, env


def _kill_after_checkpoint(cmd, env, workdir, step, timeout=300):
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    target = pathlib.Path(workdir) / "checkpoints" / str(step) / "commit_success.txt"
    start = time.time()
    while not target.exists():
        assert proc.poll() is None, proc.stdout.read()
        assert time.time() - start < timeout, "no checkpoint appeared"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL


def _final(workdir):
    _, state, step, host = runner.restore(workdir)
    state = jax.tree.map(np.asarray, checkpoint_lib.to_savable(state))
    return step, state, host


def assert_same_run(a, b):
    step_a, state_a, host_a = _final(a)
    step_b, state_b, host_b = _final(b)
    assert step_a == step_b == 36
    assert host_a == host_b  # R and b, bit for bit (JSON floats)
    for x, y in zip(jax.tree.leaves(state_a), jax.tree.leaves(state_b), strict=True):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(
        np.loadtxt(pathlib.Path(a) / "cl" / "cl_matrix.csv", delimiter=",", skiprows=1),
        np.loadtxt(pathlib.Path(b) / "cl" / "cl_matrix.csv", delimiter=",", skiprows=1),
    )


def _killed_twice_then_resumed(tmp_path, strategy):
    """Straight run, and a run SIGKILLed inside task 0 (after step 8), rerun and
    SIGKILLed again at the end of task 0 (after step 12), then rerun to the end."""
    options = [f"cl.strategy={strategy}"]
    cmd, env = _cli(tmp_path / "straight", *options)
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    cmd, env = _cli(tmp_path / "killed", *options)
    _kill_after_checkpoint(cmd, env, tmp_path / "killed", 8)
    _kill_after_checkpoint(cmd, env, tmp_path / "killed", 12)
    latest = checkpoint_lib.Checkpointer(tmp_path / "killed" / "checkpoints")
    assert latest.latest_step() < 36
    latest.close()
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    assert_same_run(tmp_path / "straight", tmp_path / "killed")


def test_sigkill_inside_and_between_tasks_resumes_exactly(tmp_path):
    """Replay: a buffer, a reservoir count and a random key updated every step."""
    _killed_twice_then_resumed(tmp_path, "replay")


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["ewc", "si", "lwf", "agem"])
def test_sigkill_resume_is_exact_for_every_stateful_strategy(tmp_path, strategy):
    _killed_twice_then_resumed(tmp_path, strategy)


@pytest.mark.parametrize(
    "override, named",
    [
        ("cl.strategy=magic", "cl.strategy"),
        ('cl.strategy_options={"lam": -1}', "lam"),
        ("cl.setting=class", "cl.setting"),
        ("cl.stream=nowhere", "cl.stream"),
        ('cl.strategy_options={"buffer_size": 100000}', "buffer_size"),
    ],
)
def test_bad_input_is_one_line_naming_the_key_and_exit_code_2(
    tmp_path, capsys, override, named
):
    extra = ["cl.strategy=ewc"] if "lam" in override else []
    if "buffer_size" in override:
        extra = ["cl.strategy=replay"]
    with pytest.raises(SystemExit) as exit_info:
        cli.main(
            [
                "cl",
                "--config",
                CONFIG,
                "--workdir",
                str(tmp_path / "run"),
                *MICRO,
                *extra,
                override,
            ]  # fmt: skip
        )
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and named in err, err
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_resuming_with_another_strategy_is_refused_and_changes_nothing(tmp_path):
    runner.run(micro("cl.steps_per_task=2", "train.checkpoint_every=2"), tmp_path)
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    with pytest.raises(config_lib.ConfigError, match="cl.strategy='naive'"):
        runner.run(
            micro("cl.steps_per_task=2", "train.checkpoint_every=2", "cl.strategy=si"),
            tmp_path,
        )
    after = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before


def test_seqjax_train_on_a_continual_config_points_to_seqjax_cl(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--config", CONFIG, "--workdir", str(tmp_path / "run")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "seqjax cl --config" in err[0]
    assert not (tmp_path / "run").exists()
