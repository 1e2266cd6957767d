"""What survives on disk when a run goes wrong: a diverged run keeps its last finite
checkpoint, a rerun with a config of another state layout changes nothing, a second
trainer on a busy workdir fails at once, and the best checkpoint survives a resume."""

import pathlib
import re
import socket
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tiny_lm import tiny_lm

from seqjax import cli
from seqjax import config as config_lib
from seqjax.train import checkpoint as checkpoint_lib
from seqjax.train import extension as extension_lib
from seqjax.train import trainer

ROOT = pathlib.Path(__file__).resolve().parents[2]


def tiny(steps=4, **overrides) -> config_lib.Config:
    """The trainer tests' tiny LM run, smaller batches and rare evaluations."""
    small = {
        "data.max_bytes": 40_000,
        "data.batch_size": 4,
        "train.eval_every": 100,
        "train.eval_batches": 1,
    }
    return tiny_lm(steps, **{**small, **overrides})


def saved_steps(workdir) -> list[int]:
    """The step folders in ``workdir/checkpoints`` (what a restore can see)."""
    ckpt = pathlib.Path(workdir) / "checkpoints"
    return sorted(int(p.name) for p in ckpt.iterdir() if p.name.isdigit())


def all_finite(state) -> bool:
    leaves = jax.tree.leaves(checkpoint_lib.to_savable(state))
    return all(np.isfinite(np.asarray(x)).all() for x in leaves)


def snapshot(workdir) -> dict[str, tuple[int, int]]:
    """``{path: (size, mtime_ns)}`` of every file under ``workdir`` but the lock."""
    root = pathlib.Path(workdir)
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


# --- 1. no non-finite state is ever saved ----------------------------------------


def nan_at(step: int | None) -> extension_lib.Extension:
    """An extension counting steps whose extra loss is NaN at ``step`` (1-based)
    only, so that step's gradients and new parameters are NaN; zero elsewhere."""

    def loss(state, params, batch, ctx):
        bad = state["steps"] == (-1 if step is None else step - 1)
        squared = sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(params))
        return jnp.where(bad, jnp.nan, 0.0) * squared

    return extension_lib.Extension(
        init=lambda params: {"steps": jnp.zeros((), jnp.int32)},
        loss=loss,
        update=lambda state, old, new, grads, batch: {"steps": state["steps"] + 1},
    )


def test_nan_at_an_unlogged_step_is_not_saved_and_the_rerun_resumes(tmp_path, capsys):
    """NaN at step 7 with logging only at the end: the save of step 8 is refused,
    keep-last-2 leaves steps 4 and 6 (finite) on disk, and a good rerun resumes from
    step 6."""
    config = tiny(steps=12, **{"train.log_every": 20, "train.keep_checkpoints": 2})
    with pytest.raises(FloatingPointError) as error:
        trainer.train(config, tmp_path, extension=nan_at(7))
    message = str(error.value)
    assert "\n" not in message
    assert "diverged at step 7:" in message
    assert "the last finite checkpoint (step 6) is kept" in message
    assert "optim.learning_rate" in message
    assert "grad_clip_norm" not in message  # already set (to 1.0)
    assert saved_steps(tmp_path) == [4, 6]
    run, state, step = trainer.restore_run(tmp_path, extension=nan_at(None))
    assert step == 6 and all_finite(state)
    assert int(run.extension_state(state)["steps"]) == 6
    capsys.readouterr()

    result = trainer.train(config, tmp_path, extension=nan_at(None))
    assert "resumed from step 6" in capsys.readouterr().out
    assert result.step == 12
    run, state, step = trainer.restore_run(tmp_path, extension=nan_at(None))
    assert step == 12 and all_finite(state)


def test_the_advice_names_grad_clip_norm_only_when_it_is_unset(tmp_path):
    config = tiny(steps=4, **{"optim.grad_clip_norm": None})
    with pytest.raises(FloatingPointError, match="set optim.grad_clip_norm") as error:
        trainer.train(config, tmp_path, extension=nan_at(1))
    assert "no checkpoint was saved" in str(error.value)
    assert not saved_steps(tmp_path)


def cli_train(workdir, *overrides) -> list[str]:
    """``seqjax train --config configs/demo.py:tiny`` on one device."""
    config = str(ROOT / "configs" / "demo.py:tiny")
    return ["train", "--config", config, "--workdir", str(workdir), "mesh.data=1",
            "train.sample_prompt=", *overrides]  # fmt: skip


@pytest.mark.slow  # the in-process test above covers the guard; this is the CLI's
def test_command_line_divergence_on_resume_keeps_the_last_finite_checkpoint(
    tmp_path, capsys
):
    """The user's report: 4 steps, then a resume with ``optim.learning_rate=1e30``
    and sparse logging; only NaN checkpoints used to remain. Now it exits 1 with one
    line, steps 2 and 4 stay, and the original command resumes from step 4. A rerun
    that changes the optimizer state's layout exits 2 with one line."""
    cli.main(cli_train(tmp_path, "train.steps=4", "train.checkpoint_every=2"))
    assert saved_steps(tmp_path) == [2, 4]
    capsys.readouterr()

    more = ["train.steps=12", "train.checkpoint_every=2"]
    diverging = cli_train(
        tmp_path, *more, "optim.learning_rate=1e30", "train.log_every=20"
    )
    with pytest.raises(SystemExit) as exit_info:
        cli.main(diverging)
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("resuming with a changed config: optim.learning_rate")
    assert len(err) == 2 and err[1].startswith("seqjax train: training diverged at")
    bad_step = int(re.search(r"diverged at step (\d+)", err[1]).group(1))
    assert bad_step in (5, 6)  # the first step with lr 1e30 or the next one
    assert saved_steps(tmp_path) == [2, 4]
    _, state, step = trainer.restore_run(tmp_path)
    assert step == 4 and all_finite(state)

    before = snapshot(tmp_path / "checkpoints")
    with pytest.raises(SystemExit) as exit_info:
        cli.main(cli_train(tmp_path, *more, "optim.grad_clip_norm=none"))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "optim.grad_clip_norm: 1.0 -> None" in err[0], err
    assert snapshot(tmp_path / "checkpoints") == before

    cli.main(cli_train(tmp_path, *more))
    assert "resumed from step 4" in capsys.readouterr().out
    _, state, step = trainer.restore_run(tmp_path)
    assert step == 12 and all_finite(state)


# --- 2. config.json only after a successful restore -------------------------------


def test_a_rerun_with_another_state_layout_changes_nothing_on_disk(tmp_path, capsys):
    trainer.train(tiny(steps=4), tmp_path)
    before = snapshot(tmp_path)
    config_json = (tmp_path / "config.json").read_text()

    changed = config_lib.apply_overrides(tiny(steps=6), {"optim.grad_clip_norm": None})
    with pytest.raises(config_lib.ConfigError) as error:
        trainer.train(changed, tmp_path)
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"the checkpoints in {tmp_path} hold a run with a ")
    assert "changed keys: optim.grad_clip_norm: 1.0 -> None; " in message
    assert "train.steps: 4 -> 6" in message
    assert message.endswith("use the saved config or another workdir")
    # Nothing was written, renamed or set aside as unreadable.
    assert snapshot(tmp_path) == before
    assert (tmp_path / "config.json").read_text() == config_json
    assert not list((tmp_path / "checkpoints").glob("*unreadable*"))
    capsys.readouterr()

    result = trainer.train(tiny(steps=6), tmp_path)  # the original command resumes
    assert "resumed from step 4" in capsys.readouterr().out
    assert result.step == 6 and saved_steps(tmp_path) == [2, 4, 6]


# --- 3. one trainer per workdir ---------------------------------------------------

HOLD_LOCK = """
import pathlib, sys
from seqjax.train import trainer
with trainer._workdir_lock(pathlib.Path(sys.argv[1])):
    print("locked", flush=True)
    sys.stdin.read()
"""


def test_a_second_trainer_on_a_busy_workdir_fails_at_once(tmp_path, capsys):
    trainer.train(tiny(steps=4), tmp_path)
    before = snapshot(tmp_path)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        busy = f"{tmp_path} is in use by pid {holder.pid} on {socket.gethostname()}"
        with pytest.raises(config_lib.ConfigError, match=re.escape(busy)):
            trainer.train(tiny(steps=6), tmp_path)
        assert snapshot(tmp_path) == before  # nothing written by the second one

        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_info:
            cli.main(cli_train(tmp_path, "train.steps=6"))
        assert exit_info.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [f"seqjax train: {busy}: wait for that run to end or use "
                       "another workdir"]  # fmt: skip
    finally:
        holder.communicate("", timeout=120)  # the holder exits: the lock is free
    assert holder.returncode == 0
    assert snapshot(tmp_path) == before
    result = trainer.train(tiny(steps=6), tmp_path)
    assert result.step == 6
    trainer.train(tiny(steps=6), tmp_path)  # and free again after a return


# --- 4. the best checkpoint survives a resume -------------------------------------


def test_the_best_checkpoint_survives_a_resume(tmp_path, monkeypatch):
    """keep_checkpoints=1 and an evaluation every 2 steps whose best value is at
    step 2; the run stops at step 4 and resumes to step 8. Step 2 stays on disk
    beside the latest and ``restore_run(which="best")`` returns it."""
    scripted = iter([1.0, 3.0, 4.0, 5.0, 6.0])  # eval/loss at steps 2, 4, 6, 8

    def evaluate_state(run, state, eval_data, max_batches):
        return {"eval/loss": next(scripted)}

    monkeypatch.setattr(trainer, "evaluate_state", evaluate_state)
    options = {"train.keep_checkpoints": 1, "train.eval_every": 2}
    trainer.train(tiny(steps=4, **options), tmp_path)
    assert saved_steps(tmp_path) == [2, 4]
    trainer.train(tiny(steps=8, **options), tmp_path)
    assert saved_steps(tmp_path) == [2, 8]
    checkpointer = checkpoint_lib.Checkpointer(tmp_path / "checkpoints", keep=1)
    assert checkpointer.best_step() == 2
    checkpointer.close()
    _, state, step = trainer.restore_run(tmp_path, which="best")
    assert step == 2 and all_finite(state)
