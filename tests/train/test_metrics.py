"""metrics.jsonl, TensorBoard event files and the throughput timer."""

import doctest
import json
import math
import os
import pathlib
import signal
import struct
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest
from tensorboardX.proto import event_pb2
from tensorboardX.record_writer import masked_crc32c

from seqjax.train import metrics

ROOT = pathlib.Path(__file__).resolve().parents[2]


# --- a TensorBoard event reader that needs neither TensorFlow nor tensorboard ------


def _records(path: pathlib.Path):
    """The payloads of a TFRecord file, checking both CRCs of every record."""
    data = path.read_bytes()
    pos = 0
    while pos < len(data):
        header = data[pos : pos + 8]
        (length,) = struct.unpack("<Q", header)
        (header_crc,) = struct.unpack("<I", data[pos + 8 : pos + 12])
        assert header_crc == masked_crc32c(header), f"bad length CRC in {path}"
        payload = data[pos + 12 : pos + 12 + length]
        (payload_crc,) = struct.unpack(
            "<I", data[pos + 12 + length : pos + 16 + length]
        )
        assert payload_crc == masked_crc32c(payload), f"bad data CRC in {path}"
        yield payload
        pos += 16 + length


def _events(logdir: pathlib.Path):
    """Every ``Event`` of every event file in ``logdir``, files in name order."""
    files = sorted(logdir.glob("events.out.tfevents.*"))
    for file in files:
        for payload in _records(file):
            event = event_pb2.Event()
            event.ParseFromString(payload)
            yield event


def _visible_scalars(logdir: pathlib.Path) -> dict[str, list[tuple[int, float]]]:
    """tag -> [(step, value)] as TensorBoard shows them: a ``SessionLog.START``
    at step s hides the earlier-read events of steps >= s (purge)."""
    scalars: dict[str, list[tuple[int, float]]] = {}
    for event in _events(logdir):
        if event.HasField("session_log"):
            if event.session_log.status == event_pb2.SessionLog.START:
                for tag in scalars:
                    scalars[tag] = [(s, v) for s, v in scalars[tag] if s < event.step]
        elif event.HasField("summary"):
            for value in event.summary.value:
                scalars.setdefault(value.tag, []).append(
                    (event.step, value.simple_value)
                )
    return scalars


def _lines(workdir) -> list[str]:
    return (pathlib.Path(workdir) / "metrics.jsonl").read_text().splitlines()


# --- metrics.jsonl ---------------------------------------------------------------


def test_jsonl_keys_and_types(tmp_path):
    loss = jnp.float32(2.3)
    with metrics.MetricsWriter(tmp_path, tensorboard=False) as writer:
        writer.write(
            np.int64(10),
            {
                "train/loss": loss,
                "train/lr": np.float64(3e-4),
                "train/tokens_per_sec": np.float32(51234.5),
                "train/step_time": 0.0625,
                "train/tokens": np.int32(4096),
                "train/nonfinite": np.bool_(False),
            },
        )
        writer.write(
            20, {"eval/loss": jnp.asarray(2.5, jnp.bfloat16), "eval/accuracy": 0.75}
        )
    lines = _lines(tmp_path)
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert list(first) == [
        "step",
        "train/loss",
        "train/lr",
        "train/tokens_per_sec",
        "train/step_time",
        "train/tokens",
        "train/nonfinite",
    ]
    assert type(first["step"]) is int and first["step"] == 10
    for key in ("train/loss", "train/lr", "train/tokens_per_sec", "train/step_time"):
        assert type(first[key]) is float
    assert type(first["train/tokens"]) is int and first["train/tokens"] == 4096
    assert first["train/nonfinite"] is False
    # float32 values are written as the shortest decimal naming the same float32
    assert first["train/loss"] == 2.3
    assert np.float32(first["train/loss"]) == np.float32(loss)
    assert first["train/lr"] == 3e-4  # float64 kept exactly
    assert second == {"step": 20, "eval/loss": 2.5, "eval/accuracy": 0.75}
    assert metrics.read_metrics(tmp_path) == [first, second]
    assert metrics.read_metrics(tmp_path / "metrics.jsonl") == [first, second]


def test_float32_values_round_trip(tmp_path):
    values = np.random.default_rng(0).standard_normal(200).astype(np.float32) * 1e3
    values = np.concatenate([values, np.float32([1e-30, 3.4e38, -0.0, 7.0])])
    with metrics.MetricsWriter(tmp_path, tensorboard=False) as writer:
        for i, v in enumerate(values):
            writer.write(i, {"x": v})
    read = np.float32([e["x"] for e in metrics.read_metrics(tmp_path)])
    np.testing.assert_array_equal(read, values)


def test_non_finite_values_are_logged(tmp_path):
    with metrics.MetricsWriter(tmp_path, tensorboard=False) as writer:
        writer.write(1, {"train/loss": jnp.float32(jnp.nan), "g": np.inf})
    (event,) = metrics.read_metrics(tmp_path)
    assert math.isnan(event["train/loss"]) and event["g"] == math.inf


@pytest.mark.parametrize(
    ("step", "values", "error", "match"),
    [
        (1, {"x": np.zeros(2)}, TypeError, r"metrics\['x'\] must be a scalar"),
        (1, {"x": "2.0"}, TypeError, r"metrics\['x'\] must be a real number"),
        (1, {"x": None}, TypeError, r"metrics\['x'\]"),
        (1, {"x": 1 + 2j}, TypeError, r"metrics\['x'\]"),
        (1, {"step": 1.0}, ValueError, "metric name 'step'"),
        (1, {"": 1.0}, ValueError, "metric name ''"),
        (1, {3: 1.0}, TypeError, "metric names must be strings"),
        (-1, {"x": 1.0}, ValueError, "step must be >= 0"),
        (1.5, {"x": 1.0}, TypeError, "step must be an integer"),
        (1, [("x", 1.0)], TypeError, "metrics must be a mapping"),
    ],
)
def test_bad_input_is_rejected(tmp_path, step, values, error, match):
    with metrics.MetricsWriter(tmp_path, tensorboard=False) as writer:
        with pytest.raises(error, match=match):
            writer.write(step, values)
    assert metrics.read_metrics(tmp_path) == []  # nothing half-written


def test_step_may_not_go_back_without_truncation(tmp_path):
    with metrics.MetricsWriter(tmp_path, tensorboard=False) as writer:
        writer.write(5, {"train/loss": 1.0})
        writer.write(5, {"eval/loss": 1.5})  # same step: fine
    with metrics.MetricsWriter(tmp_path, tensorboard=False) as writer:
        assert writer.last_step == 5
        with pytest.raises(ValueError, match=r"call truncate_after\(k\)"):
            writer.write(3, {"train/loss": 1.0})
    with pytest.raises(ValueError, match="is closed"):
        writer.write(6, {"train/loss": 1.0})


def _log_run(writer, steps, eval_every=5):
    for step in steps:
        writer.write(step, {"train/loss": 10.0 / step, "train/lr": 0.1})
        if step % eval_every == 0:
            writer.write(step, {"eval/loss": 20.0 / step})


def test_truncate_after_keeps_events_up_to_step(tmp_path):
    with metrics.MetricsWriter(tmp_path, tensorboard=False) as writer:
        _log_run(writer, range(1, 13))
        before = _lines(tmp_path)
        writer.truncate_after(5)
        # exactly the lines of steps <= 5, byte for byte, including the eval at 5
        expected = [line for line in before if json.loads(line)["step"] <= 5]
        assert _lines(tmp_path) == expected
        assert len(expected) == 6
        assert writer.last_step == 5
        _log_run(writer, range(6, 13))  # the resumed run logs the same steps again
    assert _lines(tmp_path) == before  # no duplicated or orphaned events
    assert not list(tmp_path.glob(".metrics.jsonl.*"))  # no temporary file left


def test_truncate_at_open_after_a_restart(tmp_path):
    with metrics.MetricsWriter(tmp_path, tensorboard=False) as writer:
        _log_run(writer, range(1, 11))
    full = _lines(tmp_path)
    with metrics.MetricsWriter(tmp_path, tensorboard=False, truncate_after=4) as w:
        assert [e["step"] for e in metrics.read_metrics(tmp_path)] == [1, 2, 3, 4]
        _log_run(w, range(5, 11))
    assert _lines(tmp_path) == full


def test_truncate_before_everything_clears_the_file(tmp_path):
    with metrics.MetricsWriter(tmp_path, tensorboard=False) as writer:
        _log_run(writer, range(1, 4))
        writer.truncate_after(-1)
        assert metrics.read_metrics(tmp_path) == []
        assert writer.last_step == -1
        writer.write(0, {"train/loss": 1.0})
    assert metrics.read_metrics(tmp_path) == [{"step": 0, "train/loss": 1.0}]
    with metrics.MetricsWriter(tmp_path, tensorboard=False) as writer:
        with pytest.raises(ValueError, match="step must be >= -1"):
            writer.truncate_after(-2)
        with pytest.raises(TypeError, match="step must be an integer"):
            writer.truncate_after("3")


def test_truncated_last_line_is_tolerated_and_repaired(tmp_path):
    with metrics.MetricsWriter(tmp_path, tensorboard=False) as writer:
        _log_run(writer, range(1, 5))
    good = _lines(tmp_path)
    path = tmp_path / "metrics.jsonl"
    with open(path, "ab") as f:  # a crash in the middle of writing step 5
        f.write(b'{"step": 5, "train/lo')
    assert [json.loads(line) for line in good] == metrics.read_metrics(tmp_path)
    with metrics.MetricsWriter(tmp_path, tensorboard=False) as writer:
        assert writer.last_step == 4
        writer.write(5, {"train/loss": 2.0})
    assert _lines(tmp_path) == [*good, '{"step": 5, "train/loss": 2.0}']


def test_torn_line_is_dropped_by_truncate_after(tmp_path):
    with metrics.MetricsWriter(tmp_path, tensorboard=False) as writer:
        _log_run(writer, range(1, 5))
        with open(tmp_path / "metrics.jsonl", "ab") as f:
            f.write(b'{"step": 5, "train/loss": 0.')
        writer.truncate_after(10)
        writer.write(5, {"train/loss": 2.0})
    assert [e["step"] for e in metrics.read_metrics(tmp_path)][-2:] == [4, 5]


def test_complete_last_line_without_newline_is_kept(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "a": 1.0}\n{"step": 2, "a": 0.5}')
    assert metrics.read_metrics(path) == [
        {"step": 1, "a": 1.0},
        {"step": 2, "a": 0.5},
    ]
    with metrics.MetricsWriter(tmp_path, tensorboard=False) as writer:
        writer.write(3, {"a": 0.25})
    assert [e["step"] for e in metrics.read_metrics(path)] == [1, 2, 3]


def test_corrupt_middle_line_raises(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "a": 1.0}\n{"step": 2, "a\n{"step": 3, "a": 0.5}\n')
    with pytest.raises(ValueError, match="line 2 is not a metrics event"):
        metrics.read_metrics(path)
    with pytest.raises(ValueError, match="line 2"):
        metrics.MetricsWriter(tmp_path, tensorboard=False)


def test_missing_file_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="no metrics file"):
        metrics.read_metrics(tmp_path)


_CRASHING_RUN = """
import os, signal, sys
from seqjax.train import metrics
writer = metrics.MetricsWriter(sys.argv[1])
for step in range(1, 8):
    writer.write(step, {"train/loss": 1.0 / step})
os.kill(os.getpid(), signal.SIGKILL)  # no close(), no exit handlers
"""


def test_a_killed_process_loses_nothing_already_logged(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", _CRASHING_RUN, str(tmp_path)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        timeout=120,
    )
    assert result.returncode == -signal.SIGKILL, result.stderr.decode()
    events = metrics.read_metrics(tmp_path)
    assert [e["step"] for e in events] == list(range(1, 8))
    assert events[-1]["train/loss"] == 1.0 / 7


# --- TensorBoard -----------------------------------------------------------------


def test_tensorboard_event_files_hold_the_scalars(tmp_path):
    with metrics.MetricsWriter(tmp_path) as writer:
        _log_run(writer, range(1, 11))
    logdir = tmp_path / "tensorboard"
    assert list(logdir.glob("events.out.tfevents.*"))
    events = list(_events(logdir))
    assert events[0].file_version == "brain.Event:2"
    scalars = _visible_scalars(logdir)
    assert set(scalars) == {"train/loss", "train/lr", "eval/loss"}
    expected = {
        "train/loss": [(s, 10.0 / s) for s in range(1, 11)],
        "train/lr": [(s, 0.1) for s in range(1, 11)],
        "eval/loss": [(5, 4.0), (10, 2.0)],
    }
    for tag, points in expected.items():
        steps, values = zip(*scalars[tag], strict=True)
        want_steps, want_values = zip(*points, strict=True)
        assert steps == want_steps
        # simple_value is a float32
        np.testing.assert_array_equal(np.float32(values), np.float32(want_values))


def test_tensorboard_purges_steps_after_a_resume(tmp_path):
    with metrics.MetricsWriter(tmp_path) as writer:
        _log_run(writer, range(1, 9))  # crashed run got to step 8
    with metrics.MetricsWriter(tmp_path, truncate_after=3) as writer:
        for step in range(4, 7):  # resumed from the checkpoint at 3; new values
            writer.write(step, {"train/loss": 100.0 + step})
    logdir = tmp_path / "tensorboard"
    files = sorted(logdir.glob("events.out.tfevents.*"))
    assert len(files) == 2
    purges = [
        e.step
        for e in _events(logdir)
        if e.HasField("session_log")
        and e.session_log.status == event_pb2.SessionLog.START
    ]
    assert purges == [4]
    scalars = _visible_scalars(logdir)
    assert scalars["train/loss"] == [(s, np.float32(10.0 / s)) for s in (1, 2, 3)] + [
        (s, 100.0 + s) for s in (4, 5, 6)
    ]
    assert [s for s, _ in scalars["eval/loss"]] == []  # the eval at step 5 was purged
    # the jsonl file agrees
    steps = [(e["step"], e.get("train/loss")) for e in metrics.read_metrics(tmp_path)]
    assert steps == [
        (1, 10.0),
        (2, 5.0),
        (3, 10.0 / 3),
        (4, 104.0),
        (5, 105.0),
        (6, 106.0),
    ]


def test_truncate_in_the_same_second_keeps_both_event_files(tmp_path):
    with metrics.MetricsWriter(tmp_path) as writer:
        writer.write(1, {"a": 1.0})
        writer.truncate_after(1)
        writer.write(2, {"a": 2.0})
        writer.truncate_after(2)
        writer.write(3, {"a": 3.0})
    assert len(list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))) == 3
    assert _visible_scalars(tmp_path / "tensorboard")["a"] == [
        (1, 1.0),
        (2, 2.0),
        (3, 3.0),
    ]


def test_without_tensorboard_no_event_files(tmp_path):
    with metrics.MetricsWriter(tmp_path, tensorboard=False) as writer:
        writer.write(1, {"a": 1.0})
    assert not (tmp_path / "tensorboard").exists()


# --- Throughput ------------------------------------------------------------------


class _Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_throughput_skips_compilation_and_averages_a_window():
    clock = _Clock()
    tp = metrics.Throughput(window=3, clock=clock)
    tp.start()
    assert tp.rates() == {} and tp.step_time is None
    clock.now = 30.0  # step 1: compiling
    tp.add(100)
    assert tp.rates() == {}
    durations = [1.0, 2.0, 3.0, 4.0, 5.0]
    tokens = [100, 200, 300, 400, 500]
    for d, n in zip(durations, tokens, strict=True):
        clock.now += d
        tp.add(n)
    # window of the last 3 steps: 3 + 4 + 5 s, 300 + 400 + 500 tokens
    assert tp.measured_steps == 3
    assert tp.step_time == pytest.approx(4.0)
    assert tp.tokens_per_sec == pytest.approx(1200 / 12)
    assert tp.rates() == {
        "train/step_time": pytest.approx(4.0),
        "train/tokens_per_sec": pytest.approx(100.0),
    }


def test_throughput_without_start_and_with_a_pause():
    clock = _Clock()
    tp = metrics.Throughput(window=10, skip=1, clock=clock)
    clock.now = 5.0
    tp.add(64)  # first step: no start, skipped anyway
    clock.now = 6.0
    tp.add(64)
    with tp.paused():  # an evaluation of 100 s
        clock.now += 100.0
    clock.now += 1.0
    tp.add(64)
    assert tp.step_time == pytest.approx(1.0)
    assert tp.tokens_per_sec == pytest.approx(64.0)


def test_throughput_skip_zero_counts_from_start():
    clock = _Clock()
    tp = metrics.Throughput(window=4, skip=0, clock=clock)
    tp.start()
    clock.now = 2.0
    tp.add(10)
    assert tp.rates("eval/") == {
        "eval/step_time": pytest.approx(2.0),
        "eval/tokens_per_sec": pytest.approx(5.0),
    }


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"window": 0}, "window must be"), ({"skip": -1}, "skip must be")],
)
def test_throughput_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        metrics.Throughput(**kwargs)


def test_docstring_examples(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = doctest.testmod(metrics, verbose=False)
    assert result.attempted > 0 and result.failed == 0
