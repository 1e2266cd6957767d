"""The trainer end to end: loss falls, metrics, exact resume (also after SIGKILL and
SIGTERM), corrupted checkpoints, other meshes, 8 devices against 1."""

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
from tiny_lm import tiny_lm

from seqjax import config as config_lib
from seqjax.train import checkpoint as checkpoint_lib
from seqjax.train import trainer

ROOT = pathlib.Path(__file__).resolve().parents[2]


def tiny(steps=8, **overrides) -> config_lib.Config:
    """A very small LM run on the built-in prose: seconds per run on a CPU."""
    return tiny_lm(steps, **overrides)


def params_of(workdir, which="latest"):
    run, state, step = trainer.restore_run(workdir, which=which)
    state = checkpoint_lib.to_savable(state)  # typed PRNG keys -> raw key data
    return step, jax.tree.map(np.asarray, jax.device_get(state))


def assert_same_state(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)


def metrics(workdir):
    lines = (pathlib.Path(workdir) / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_loss_falls_and_metrics_have_the_documented_keys(tmp_path):
    result = trainer.train(tiny(steps=24, **{"train.eval_every": 12}), tmp_path)
    events = metrics(tmp_path)
    train_events = [e for e in events if "train/loss" in e]
    assert [e["step"] for e in train_events] == list(range(1, 25))
    for key in ["train/loss", "train/tokens_per_sec", "train/step_time", "train/lr"]:
        assert all(isinstance(e[key], float) for e in train_events[1:]), key
    evals = [e for e in events if "eval/loss" in e]
    assert [e["step"] for e in evals] == [12, 24]
    assert {"eval/bits_per_byte", "eval/accuracy"} <= set(evals[0])
    first = np.mean([e["train/loss"] for e in train_events[:3]])
    last = np.mean([e["train/loss"] for e in train_events[-3:]])
    assert last < first - 0.3, (first, last)
    assert evals[-1]["eval/loss"] < evals[0]["eval/loss"]
    assert result.step == 24 and result.metrics == {
        k: evals[-1][k] for k in result.metrics
    }
    assert (tmp_path / "config.json").is_file()
    assert list((tmp_path / "tensorboard").iterdir())
    assert sorted(p.name for p in (tmp_path / "plots").glob("*.png"))


def test_identical_runs_give_identical_losses(tmp_path):
    trainer.train(tiny(), tmp_path / "a")
    trainer.train(tiny(), tmp_path / "b")
    losses = lambda w: [e["train/loss"] for e in metrics(w) if "train/loss" in e]
    assert losses(tmp_path / "a") == losses(tmp_path / "b")
    assert_same_state(params_of(tmp_path / "a")[1], params_of(tmp_path / "b")[1])


def test_exact_resume_with_dropout_accumulation_and_shuffling(tmp_path):
    # A constant learning rate, so that a run configured for 4 steps is the first half
    # of the 8-step run (a schedule would depend on train.steps). The real-process
    # test below interrupts one configuration instead.
    cfg = tiny(
        steps=8,
        **{"model.dropout": 0.2, "optim.accumulation_steps": 2,
           "optim.schedule": "constant"},
    )  # fmt: skip
    trainer.train(cfg, tmp_path / "straight")
    stopped = config_lib.apply_overrides(cfg, {"train.steps": 4})
    trainer.train(stopped, tmp_path / "resumed")  # k = 4 steps ...
    trainer.train(cfg, tmp_path / "resumed")  # ... then N - k more, resumed
    step_a, a = params_of(tmp_path / "straight")
    step_b, b = params_of(tmp_path / "resumed")
    assert step_a == step_b == 8
    assert_same_state(a, b)
    # The metrics log of the resumed run has each step once.
    steps = [e["step"] for e in metrics(tmp_path / "resumed") if "train/loss" in e]
    assert steps == list(range(1, 9))


def _cli(workdir, *overrides):
    config = str(ROOT / "configs" / "demo.py:tiny")
    cmd = [sys.executable, "-m", "seqjax.cli", "train", "--config", config,
           "--workdir", str(workdir), *overrides]  # fmt: skip
    env = dict(os.environ, PYTHONUNBUFFERED="1", JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)  # one CPU device in the child
    return cmd, env


def _wait_for_checkpoint(workdir, step, proc, timeout=240):
    target = pathlib.Path(workdir) / "checkpoints" / str(step)
    start = time.time()
    while not (target / "commit_success.txt").exists():
        assert proc.poll() is None, proc.stdout.read()
        assert time.time() - start < timeout, "no checkpoint appeared"
        time.sleep(0.05)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_real_process_killed_then_resumed_is_exact(tmp_path, sig):
    """A subprocess is killed (SIGKILL) or preempted (SIGTERM) mid-run; rerunning the
    same command finishes with parameters identical to an uninterrupted run."""
    overrides = ["train.steps=12", "train.checkpoint_every=2", "train.eval_every=6"]
    cmd, env = _cli(tmp_path / "straight", *overrides)
    subprocess.run(cmd, env=env, check=True, capture_output=True)

    cmd, env = _cli(tmp_path / "killed", *overrides)
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    _wait_for_checkpoint(tmp_path / "killed", 4, proc)
    proc.send_signal(sig)
    out = proc.communicate(timeout=240)[0]
    if sig == signal.SIGTERM:
        assert proc.returncode == 143, out
        assert "checkpoint saved" in out
    else:
        assert proc.returncode == -signal.SIGKILL
    assert (
        checkpoint_lib.Checkpointer(tmp_path / "killed" / "checkpoints").latest_step()
        < 12
    )
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    assert_same_state(
        params_of(tmp_path / "straight")[1], params_of(tmp_path / "killed")[1]
    )


def test_kill_during_an_asynchronous_save_still_resumes(tmp_path):
    """SIGKILL the moment orbax starts writing a checkpoint (its temporary folder
    appears); the rerun resumes from the last finished one and ends identical."""
    overrides = ["train.steps=10", "train.checkpoint_every=2", "train.eval_every=5"]
    cmd, env = _cli(tmp_path / "straight", *overrides)
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    cmd, env = _cli(tmp_path / "killed", *overrides)
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    ckpt = tmp_path / "killed" / "checkpoints"
    _wait_for_checkpoint(tmp_path / "killed", 2, proc)
    start = time.time()
    while not any("tmp" in p.name for p in ckpt.iterdir()):  # the save of step 4
        assert proc.poll() is None and time.time() - start < 240
        time.sleep(0.001)
    proc.kill()
    proc.communicate(timeout=60)
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    assert_same_state(
        params_of(tmp_path / "straight")[1], params_of(tmp_path / "killed")[1]
    )


def test_corrupted_latest_checkpoint_falls_back_with_a_warning(tmp_path):
    trainer.train(tiny(steps=6), tmp_path)
    ckpt = tmp_path / "checkpoints"
    latest = max(int(p.name) for p in ckpt.iterdir() if p.name.isdigit())
    assert latest == 6
    # Truncate every array file of the newest checkpoint's state.
    damaged = 0
    for f in (ckpt / "6" / "state").rglob("*"):
        if f.is_file() and f.stat().st_size > 64 and "metadata" not in f.name:
            f.write_bytes(f.read_bytes()[:16])
            damaged += 1
    assert damaged
    with pytest.warns(RuntimeWarning, match="unreadable"):
        step, _ = params_of(tmp_path)
    assert step == 4
    # Training again resumes from step 4 and reaches step 6 again.
    with pytest.warns(RuntimeWarning, match="unreadable"):
        result = trainer.train(tiny(steps=6), tmp_path)
    assert result.step == 6
    assert (ckpt / "6.unreadable").is_dir(), "the damaged checkpoint is kept aside"
    assert params_of(tmp_path)[0] == 6


def test_restore_onto_a_different_mesh_and_eight_devices_agree_with_one(tmp_path):
    assert jax.device_count() == 8
    one = tiny(steps=4)
    eight = config_lib.apply_overrides(one, {"mesh.data": 8})
    trainer.train(one, tmp_path / "one")
    trainer.train(eight, tmp_path / "eight")
    loss = lambda w: [e["train/loss"] for e in metrics(w) if "train/loss" in e]
    np.testing.assert_allclose(
        loss(tmp_path / "one"), loss(tmp_path / "eight"), rtol=1e-4
    )
    # Continue the 8-device run on a (data=2, fsdp=4) mesh with fsdp sharding active.
    other = config_lib.apply_overrides(
        eight,
        {"mesh.data": 2, "mesh.fsdp": 4, "mesh.fsdp_min_size": 16, "train.steps": 6},
    )
    result = trainer.train(other, tmp_path / "eight")
    assert result.step == 6
    continued = config_lib.apply_overrides(one, {"train.steps": 6})
    trainer.train(continued, tmp_path / "one")
    _, a = params_of(tmp_path / "one")
    _, b = params_of(tmp_path / "eight")
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(x, y, rtol=2e-3, atol=2e-5)


def test_eval_and_generate_commands(tmp_path, capsys):
    from seqjax import cli

    trainer.train(tiny(steps=4), tmp_path)
    cli.main(["eval", "--workdir", str(tmp_path)])
    out = json.loads(capsys.readouterr().out)
    assert out["step"] == 4 and "eval/bits_per_byte" in out
    cli.main(["eval", "--workdir", str(tmp_path), "--best"])
    assert json.loads(capsys.readouterr().out)["step"] == 4
    cli.main(
        [
            "generate",
            "--workdir",
            str(tmp_path),
            "--prompt",
            "The ",
            "--max-tokens",
            "8",
        ]
    )
    assert capsys.readouterr().out.startswith("The ")
    cli.main(["plot", "--workdir", str(tmp_path)])
    assert ".png" in capsys.readouterr().out


def test_config_errors_from_the_command_line(tmp_path, capsys):
    from seqjax import cli

    small = str(ROOT / "configs" / "demo.py:small")
    for mistake, said in [
        (["train.stepz=3"], "unknown config key 'train.stepz'; did you mean "
                            "'train.steps'"),
        (["--config", small], "unknown variant 'small'"),
    ]:  # fmt: skip
        argv = ["train", "--config", str(ROOT / "configs" / "demo.py"),
                "--workdir", str(tmp_path / "run"), *mistake]  # fmt: skip
        with pytest.raises(SystemExit) as exit_info:
            cli.main(argv)
        assert exit_info.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and said in err[0], err
        assert not (tmp_path / "run").exists()
