"""The training progress display: log lines off a terminal, a tqdm bar on one."""

import doctest
import io

import jax.numpy as jnp
import pytest

from seqjax.train import progress


class _Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def _run(bar, clock, steps, seconds_per_step=2.0):
    for step in steps:
        clock.now += seconds_per_step
        bar.update(step, {"train/loss": 10.0 / step, "train/tokens_per_sec": 51200.0})


def test_non_tty_prints_periodic_lines():
    out, clock = io.StringIO(), _Clock()
    bar = progress.Progress(10, log_every=4, stream=out, clock=clock)
    assert bar.mode == "lines"
    _run(bar, clock, range(1, 11))
    bar.close()
    lines = out.getvalue().splitlines()
    assert lines == [
        "step 4/10 (40.0%) | loss 2.5000 | tok/s 51.2k | eta 12s",
        "step 8/10 (80.0%) | loss 1.2500 | tok/s 51.2k | eta 4s",
        "step 10/10 (100.0%) | loss 1.0000 | tok/s 51.2k",
    ]
    assert "\r" not in out.getvalue()


def test_lines_keep_the_latest_eval_metrics_and_default_interval():
    out, clock = io.StringIO(), _Clock()
    bar = progress.Progress(100, initial=60, stream=out, clock=clock)
    assert bar.log_every == 2  # a twentieth of the 40 steps to run
    bar.update(61, {"train/loss": jnp.float32(2.0), "train/lr": 3e-4})
    bar.update(62, {"eval/loss": 2.5, "eval/bits_per_byte": 3.6, "other": 1.0})
    bar.update(63, {"train/loss": 1.5})
    bar.update(64, None)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("step 62/100 (62.0%) | loss 2.0000 | eval_loss 2.5000")
    assert "bpb 3.6000" in lines[0] and "lr 3.00e-04" in lines[0]
    assert "other" not in lines[0]
    assert lines[1].startswith("step 64/100 (64.0%) | loss 1.5000 | eval_loss 2.5000")


def test_close_prints_the_last_step_once():
    out, clock = io.StringIO(), _Clock()
    bar = progress.Progress(10, log_every=5, stream=out, clock=clock)
    _run(bar, clock, range(1, 8))  # stopped early (preemption)
    bar.close()
    bar.close()
    lines = out.getvalue().splitlines()
    assert [line.split(" |")[0] for line in lines] == [
        "step 5/10 (50.0%)",
        "step 7/10 (70.0%)",
    ]
    bar.update(8, {"train/loss": 1.0})  # after close: nothing more
    assert out.getvalue().splitlines() == lines


def test_disabled_prints_nothing():
    for kwargs in ({"enabled": False}, {"mode": "off"}):
        out, clock = io.StringIO(), _Clock()
        bar = progress.Progress(10, log_every=1, stream=out, clock=clock, **kwargs)
        _run(bar, clock, range(1, 11))
        bar.write("hello")
        bar.close()
        assert out.getvalue() == ""


def test_tty_draws_a_tqdm_bar():
    out, clock = _Terminal(), _Clock()
    bar = progress.Progress(10, stream=out, clock=clock)
    assert bar.mode == "bar"
    _run(bar, clock, range(1, 11))
    bar.write("evaluating")
    bar.close()
    text = out.getvalue()
    assert "\r" in text  # redrawn in place
    assert "10/10" in text
    assert "loss 1.0000" in text and "tok/s 51.2k" in text
    assert "evaluating" in text


def test_forced_line_mode_on_a_terminal():
    out, clock = _Terminal(), _Clock()
    bar = progress.Progress(4, mode="lines", log_every=2, stream=out, clock=clock)
    _run(bar, clock, range(1, 5))
    bar.write("done")
    bar.close()
    assert out.getvalue().splitlines()[-1] == "done"
    assert "\r" not in out.getvalue()


def test_eta_uses_the_time_since_the_first_update():
    clock = _Clock()
    bar = progress.Progress(100, stream=io.StringIO(), clock=clock)
    clock.now = 50.0  # compilation before the first update is not counted
    bar.update(1)
    assert bar.eta() != bar.eta()  # nan with one update
    clock.now = 60.0
    bar.update(11)
    assert bar.eta() == pytest.approx(89.0)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(4.2, "4s"), (65, "1m05s"), (3725.0, "1h02m05s"), (float("nan"), "?")],
)
def test_format_duration(seconds, text):
    assert progress.format_duration(seconds) == text


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        ((-1,), {}, "total must be"),
        ((10,), {"initial": 11}, "initial must be"),
        ((10,), {"mode": "fancy"}, "mode must be one of"),
        ((10,), {"log_every": 0}, "log_every must be"),
    ],
)
def test_bad_arguments(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        progress.Progress(*args, stream=io.StringIO(), **kwargs)


def test_update_out_of_range():
    bar = progress.Progress(10, stream=io.StringIO())
    with pytest.raises(ValueError, match="step must be in"):
        bar.update(11)


def test_docstring_examples():
    result = doctest.testmod(progress, verbose=False)
    assert result.attempted > 0 and result.failed == 0


def test_a_phase_label_shows_the_step_inside_the_phase():
    out = io.StringIO()
    bar = progress.Progress(20, log_every=5, stream=out, mode="lines")
    bar.set_phase("task digits 2-3 (2/4)", first_step=6, steps=5)
    bar.update(10, {"train/loss": 1.0})
    bar.close()
    assert out.getvalue().startswith("task digits 2-3 (2/4) 5/5 | step 10/20")
