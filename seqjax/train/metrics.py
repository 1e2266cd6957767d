"""Training metrics: ``metrics.jsonl``, TensorBoard event files and throughput.

A run's metrics live in its work directory ``DIR``:

- ``DIR/metrics.jsonl`` holds one JSON object per logged event, one per line::

    {"step": 100, "train/loss": 2.31, "train/lr": 0.0003,
     "train/tokens_per_sec": 51234.5, "train/step_time": 0.08}
    {"step": 100, "eval/loss": 2.45, "eval/bits_per_byte": 3.53}

  ``"step"`` is the number of optimizer updates completed when the event was
  logged, so the events of a checkpoint taken at step ``k`` are exactly those with
  ``step <= k``. Values are plain JSON numbers (``NaN``/``Infinity`` are written as
  Python's ``json`` module writes them). The file is the source of truth: every
  event is flushed to the operating system as soon as it is written, so killing
  the process loses nothing already logged.
- ``DIR/tensorboard/`` holds TensorBoard event files with the same scalars (one
  series per metric name, indexed by step), written with ``tensorboardX``.

Resuming from the checkpoint at step ``k`` calls ``truncate_after(k)``: the events
logged after the checkpoint (which the resumed run will log again) are removed from
``metrics.jsonl`` atomically, and TensorBoard is told to hide the stale events of
those steps (``purge_step``), so the file never holds duplicated or orphaned events.

Example:
  >>> import tempfile
  >>> workdir = tempfile.mkdtemp()
  >>> with MetricsWriter(workdir, tensorboard=False) as writer:
  ...     writer.write(1, {"train/loss": 2.5})
  ...     writer.write(2, {"train/loss": 2.25})
  ...     writer.truncate_after(1)
  >>> read_metrics(workdir)
  [{'step': 1, 'train/loss': 2.5}]
"""

from __future__ import annotations

import collections
import contextlib
import json
import math
import numbers
import os
import pathlib
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"

Number = int | float | bool


def metrics_path(path: str | os.PathLike) -> pathlib.Path:
    """The metrics file for ``path``: ``path/metrics.jsonl`` if it is a folder."""
    path = pathlib.Path(path)
    return path / METRICS_FILE if path.is_dir() else path


def _to_number(name: str, value: Any) -> Number:
    """A JSON-ready Python number from a Python, NumPy or JAX scalar."""
    if isinstance(value, bool | int) and not isinstance(value, np.generic):
        return value
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str | bytes) or value is None:
        raise TypeError(
            f"metrics[{name!r}] must be a real number, got {type(value).__name__} "
            f"{value!r}."
        )
    try:
        arr = np.asarray(value)
    except Exception as err:
        raise TypeError(
            f"metrics[{name!r}] must be a real number, got {type(value).__name__}."
        ) from err
    if arr.ndim != 0:
        raise TypeError(
            f"metrics[{name!r}] must be a scalar, got an array of shape {arr.shape}; "
            "reduce it (e.g. mean) before logging."
        )
    kind = arr.dtype.kind
    if kind == "b":
        return bool(arr)
    if kind in "iu":
        return int(arr)
    if kind == "f" or arr.dtype.name.startswith(("bfloat", "float")):
        if arr.dtype.itemsize < 8:
            # Shortest decimal that reads back as the same float32 (bfloat16 and
            # float16 values are exact in float32): 2.3, not 2.299999952316284.
            return float(np.format_float_scientific(arr.astype(np.float32)[()]))
        return float(arr)
    raise TypeError(
        f"metrics[{name!r}] must be a real number, got dtype {arr.dtype} "
        f"({type(value).__name__})."
    )


def _to_step(step: Any, minimum: int = 0) -> int:
    """``step`` as a Python ``int`` (Python, NumPy or JAX integer scalar)."""
    if isinstance(step, bool) or not isinstance(step, numbers.Integral):
        arr = None if isinstance(step, str | bytes) else np.asarray(step)
        if arr is None or arr.ndim != 0 or arr.dtype.kind not in "iu":
            raise TypeError(
                f"step must be an integer, got {type(step).__name__} {step!r}."
            )
    step = int(step)
    if step < minimum:
        raise ValueError(f"step must be >= {minimum}, got {step}.")
    return step


def _parse_lines(path: pathlib.Path) -> tuple[list[tuple[dict, str]], bool]:
    """``(event, line)`` pairs of a metrics file, and whether its tail was torn.

    A last line that is not valid JSON (the process died while writing it) is
    dropped; a bad line anywhere else is corruption and raises.
    """
    data = path.read_bytes()
    lines = data.split(b"\n")
    # A complete file ends with "\n", leaving an empty last piece.
    pieces = [(i, line) for i, line in enumerate(lines) if line.strip()]
    events: list[tuple[dict, str]] = []
    torn = False
    for count, (i, raw) in enumerate(pieces):
        is_last = count == len(pieces) - 1
        try:
            text = raw.decode("utf-8")
            event = json.loads(text)
            if not isinstance(event, dict) or "step" not in event:
                raise ValueError("not an event object with a 'step'")
        except (UnicodeDecodeError, ValueError) as err:
            if is_last:
                torn = True
                break
            raise ValueError(
                f"{path}: line {i + 1} is not a metrics event ({err}): "
                f"{raw[:80]!r}. Only a truncated last line is tolerated."
            ) from err
        events.append((event, text))
    if data and not data.endswith(b"\n") and not torn:
        # A complete JSON object without its newline: keep it, but the file needs
        # repair before anything is appended to it.
        torn = True
    return events, torn


def read_metrics(path: str | os.PathLike) -> list[dict]:
    """Reads the events of a metrics file, in the order they were written.

    Args:
      path: ``metrics.jsonl`` or the work directory that holds it.

    Returns:
      One ``dict`` per event, each with ``"step"`` (``int``) and metric names mapped
      to numbers. A truncated last line (a crash mid-write) is dropped.

    Raises:
      FileNotFoundError: when there is no metrics file at ``path``.
      ValueError: when a line other than the last is not a JSON event object.

    Example:
      >>> events = read_metrics("runs/demo")  # doctest: +SKIP
      >>> [e["train/loss"] for e in events if "train/loss" in e]  # doctest: +SKIP
    """
    file = metrics_path(path)
    if not file.is_file():
        raise FileNotFoundError(
            f"no metrics file at {file}; a training run writes DIR/{METRICS_FILE}."
        )
    events, _ = _parse_lines(file)
    return [event for event, _ in events]


def _rewrite_atomically(path: pathlib.Path, lines: list[str]) -> None:
    """Replaces ``path`` by ``lines`` via a temporary file and a rename."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.writelines(line + "\n" for line in lines)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


class MetricsWriter:
    """Appends metrics events to ``DIR/metrics.jsonl`` and TensorBoard files.

    Each ``write(step, metrics)`` appends ``{"step": step, **metrics}`` as one JSON
    line and flushes it, and adds one TensorBoard scalar per metric at ``step``.
    NumPy and JAX scalars become Python numbers (floats of 32 bits or fewer are
    written with the shortest decimal that reads back as the same float32).

    Opening an existing file repairs a torn last line left by a crash. Steps must
    not go backwards past what the file holds: after resuming from a checkpoint at
    step ``k``, call ``truncate_after(k)`` first (a fresh run in a used folder calls
    ``truncate_after(-1)``, which clears it).

    Args:
      workdir: the run's work directory (created if missing).
      tensorboard: also write TensorBoard event files to ``workdir/tensorboard``.
      truncate_after: if given, open with ``truncate_after(step)`` applied.

    Raises:
      ValueError: when ``metrics.jsonl`` has a corrupt line before its last.

    Example:
      >>> with MetricsWriter("runs/demo") as writer:  # doctest: +SKIP
      ...     writer.truncate_after(restored_step)
      ...     writer.write(step, {"train/loss": loss, "train/lr": lr})
    """

    def __init__(
        self,
        workdir: str | os.PathLike,
        *,
        tensorboard: bool = True,
        truncate_after: int | None = None,
    ) -> None:
        self.workdir = pathlib.Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.path = self.workdir / METRICS_FILE
        self.tensorboard_dir = self.workdir / TENSORBOARD_DIR if tensorboard else None
        self._tb: Any = None
        self._purge_step: int | None = None
        self._file: Any = None
        self._last_step = -1
        if self.path.exists():
            events, torn = _parse_lines(self.path)
            if torn:
                _rewrite_atomically(self.path, [line for _, line in events])
            self._last_step = max((int(e["step"]) for e, _ in events), default=-1)
        self._file = open(self.path, "a", encoding="utf-8")
        if truncate_after is not None:
            self.truncate_after(truncate_after)

    @property
    def last_step(self) -> int:
        """The largest step in the file (``-1`` when it has no events)."""
        return self._last_step

    def _check_open(self) -> None:
        if self._file is None:
            raise ValueError(f"MetricsWriter for {self.path} is closed.")

    def write(self, step: int, metrics: Mapping[str, Any]) -> None:
        """Logs one event: ``{"step": step, **metrics}``.

        Args:
          step: optimizer updates completed (an ``int`` or integer scalar, >= 0),
            not smaller than any step already in the file.
          metrics: metric name (``"train/loss"``, ``"eval/accuracy"``, ...) to a
            real scalar (Python, NumPy or JAX).

        Raises:
          TypeError: when a name is not a string or a value is not a real scalar.
          ValueError: when ``step`` is negative or goes back past the file's last
            step, a name is empty or ``"step"``, or the writer is closed.
        """
        self._check_open()
        step = _to_step(step)
        if step < self._last_step:
            raise ValueError(
                f"step {step} is before the last step in {self.path} "
                f"({self._last_step}); when resuming from a checkpoint at step k, "
                "call truncate_after(k) before writing."
            )
        if not isinstance(metrics, Mapping):
            raise TypeError(
                f"metrics must be a mapping of names to scalars, got "
                f"{type(metrics).__name__}."
            )
        event: dict[str, Number] = {"step": step}
        for name, value in metrics.items():
            if not isinstance(name, str):
                raise TypeError(f"metric names must be strings, got {name!r}.")
            if not name or name == "step":
                raise ValueError(
                    f"metric name {name!r} is not allowed (empty or 'step')."
                )
            event[name] = _to_number(name, value)
        self._file.write(json.dumps(event) + "\n")
        self._file.flush()
        self._last_step = step
        if self.tensorboard_dir is not None:
            tb = self._summary_writer()
            for name, value in event.items():
                if name != "step":
                    tb.add_scalar(name, float(value), global_step=step)

    def _summary_writer(self) -> Any:
        if self._tb is None:
            import tensorboardX  # deferred: starts a thread per writer

            # tensorboardX names files by the second and opens them with "wb": a
            # nanosecond suffix keeps a writer reopened within the same second
            # (truncate_after) from overwriting the previous file, and keeps the
            # names in creation order, the order TensorBoard reads them in.
            self._tb = tensorboardX.SummaryWriter(
                logdir=str(self.tensorboard_dir),
                purge_step=self._purge_step,
                flush_secs=10,
                filename_suffix=f".{time.time_ns()}",
            )
            self._purge_step = None
        return self._tb

    def truncate_after(self, step: int) -> None:
        """Keeps only the events with ``event["step"] <= step``.

        ``metrics.jsonl`` is rewritten atomically (temporary file, then rename), so
        a crash during the rewrite leaves either the old or the new file. The next
        TensorBoard file starts with a purge at ``step + 1``, which makes
        TensorBoard hide the older events of later steps.

        Args:
          step: the step of the checkpoint being resumed; ``-1`` removes every
            event.

        Raises:
          TypeError: when ``step`` is not an integer.
          ValueError: when ``step < -1`` or the writer is closed.
        """
        self._check_open()
        step = _to_step(step, minimum=-1)
        self._file.close()
        self._file = None
        events, torn = _parse_lines(self.path)
        kept = [(e, line) for e, line in events if int(e["step"]) <= step]
        if torn or len(kept) != len(events):
            _rewrite_atomically(self.path, [line for _, line in kept])
        self._last_step = max((int(e["step"]) for e, _ in kept), default=-1)
        self._file = open(self.path, "a", encoding="utf-8")
        if self.tensorboard_dir is not None:
            if self._tb is not None:
                self._tb.close()
                self._tb = None
            self._purge_step = step + 1

    def flush(self) -> None:
        """Flushes ``metrics.jsonl`` and pending TensorBoard events to disk."""
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())
        if self._tb is not None:
            self._tb.flush()

    def close(self) -> None:
        """Flushes and closes the files (idempotent)."""
        if self._file is not None:
            self.flush()
            self._file.close()
            self._file = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None

    def __enter__(self) -> MetricsWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()


class Throughput:
    """Step time and tokens per second over a sliding window of steps.

    Call ``add(tokens)`` once at the end of every training step. The time of a
    step is the wall time between consecutive ``add`` calls, so with JAX's asynchronous
    dispatch the window average is right as long as the loop synchronises now and
    then (fetching the loss to log it does). The first ``skip`` steps (compilation)
    are never measured; wrap work that is not training (evaluation, checkpoints)
    in ``with throughput.paused():`` to leave it out.

    .. math:: \\mathrm{tokens/s} = \\sum_{i \\in W} n_i \\big/ (t_{last} - t_{first})

    Args:
      window: number of most recent steps averaged (>= 1).
      skip: number of initial steps never measured (>= 0; 1 skips compilation).
      clock: a monotonic clock in seconds (``time.perf_counter``).

    Raises:
      ValueError: when ``window < 1`` or ``skip < 0``.

    Example:
      >>> clock = iter([0.0, 5.0, 5.5, 6.0]).__next__  # first step: compiling
      >>> tp = Throughput(window=10, clock=clock)
      >>> tp.start(); tp.add(100); tp.add(100); tp.add(100)
      >>> tp.rates()
      {'train/step_time': 0.5, 'train/tokens_per_sec': 200.0}
    """

    def __init__(
        self,
        window: int = 20,
        *,
        skip: int = 1,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if not isinstance(window, int) or window < 1:
            raise ValueError(f"window must be an integer >= 1, got {window!r}.")
        if not isinstance(skip, int) or skip < 0:
            raise ValueError(f"skip must be an integer >= 0, got {skip!r}.")
        self.window = window
        self.skip = skip
        self._clock = clock
        self._steps = 0
        self._times: collections.deque[float] = collections.deque(maxlen=window + 1)
        self._tokens: collections.deque[float] = collections.deque(maxlen=window)

    def start(self) -> None:
        """Marks the start of the first step (optional: without it the first
        ``add`` only starts the clock)."""
        self._times.clear()
        self._tokens.clear()
        self._times.append(self._clock())

    def add(self, tokens: float = 0) -> None:
        """Marks the end of one step that processed ``tokens`` tokens."""
        now = self._clock()
        self._steps += 1
        if self._steps <= self.skip or not self._times:
            self._times.clear()
            self._tokens.clear()
            self._times.append(now)
            return
        self._times.append(now)
        self._tokens.append(float(tokens))

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Leaves the time spent inside the block out of the measurement."""
        begin = self._clock()
        try:
            yield
        finally:
            gap = self._clock() - begin
            self._times = collections.deque(
                (t + gap for t in self._times), maxlen=self.window + 1
            )

    @property
    def measured_steps(self) -> int:
        """How many steps the current window holds."""
        return len(self._tokens)

    @property
    def step_time(self) -> float | None:
        """Mean seconds per step over the window (``None`` before any)."""
        if not self._tokens:
            return None
        return (self._times[-1] - self._times[0]) / len(self._tokens)

    @property
    def tokens_per_sec(self) -> float | None:
        """Tokens per second over the window (``None`` before any)."""
        if not self._tokens:
            return None
        elapsed = self._times[-1] - self._times[0]
        return math.inf if elapsed <= 0 else sum(self._tokens) / elapsed

    def rates(self, prefix: str = "train/") -> dict[str, float]:
        """``{"train/step_time": ..., "train/tokens_per_sec": ...}``, or ``{}``
        before the first measured step."""
        if not self._tokens:
            return {}
        return {
            f"{prefix}step_time": self.step_time,
            f"{prefix}tokens_per_sec": self.tokens_per_sec,
        }
