"""A training progress display: a tqdm bar on a terminal, log lines elsewhere.

On a terminal, ``Progress`` draws a tqdm bar with ``step/total``, the latest loss,
throughput and the time left. When the stream is not a terminal (CI logs, a file,
``nohup``), a redrawn bar would fill the log with carriage returns, so it prints a
plain line every ``log_every`` steps instead::

    step 200/1000 (20.0%) | loss 2.3125 | eval_loss 2.4531 | 51.2k tok/s | eta 1m45s

The time left is the mean wall time per step since the first ``update`` (which
comes after the first, compiling, step) times the steps left.

Example:
  >>> import io
  >>> out = io.StringIO()
  >>> bar = Progress(4, log_every=2, stream=out, clock=iter([0, 1, 2]).__next__)
  >>> bar.update(1, {"train/loss": 2.5})
  >>> bar.update(2, {"train/loss": 2.25})
  >>> bar.close()
  >>> print(out.getvalue(), end="")
  step 2/4 (50.0%) | loss 2.2500 | eta 2s
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, TextIO

import numpy as np

MODES = ("auto", "bar", "lines", "off")

# Metric name -> short label shown by the bar, in display order.
SHOWN = {
    "train/loss": "loss",
    "eval/loss": "eval_loss",
    "eval/bits_per_byte": "bpb",
    "eval/accuracy": "acc",
    "train/lr": "lr",
    "train/tokens_per_sec": "tok/s",
}


def format_duration(seconds: float) -> str:
    """``3725.0 -> "1h02m05s"``, ``65 -> "1m05s"``, ``4.2 -> "4s"``."""
    if not math.isfinite(seconds):
        return "?"
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def _format_value(label: str, value: float) -> str:
    if label == "tok/s":
        for unit, scale in (("M", 1e6), ("k", 1e3)):
            if abs(value) >= scale:
                return f"{value / scale:.1f}{unit}"
        return f"{value:.0f}"
    if label == "lr":
        return f"{value:.2e}"
    return f"{value:.4f}"


class Progress:
    """Shows training progress: a tqdm bar on a terminal, else periodic lines.

    Args:
      total: the last step of the run (>= 0).
      initial: the step the run starts from (a resumed run's checkpoint step).
      enabled: ``False`` shows nothing (e.g. on processes other than the first).
      mode: ``"auto"`` (a bar if ``stream`` is a terminal, else lines), ``"bar"``,
        ``"lines"`` or ``"off"``.
      log_every: in line mode, print every this many steps (and at the last step);
        defaults to a twentieth of the steps to run.
      stream: where to write (``sys.stdout`` at construction).
      desc: the bar's label.
      clock: a clock in seconds for the time left (``time.monotonic``).

    Raises:
      ValueError: when ``total < 0``, ``initial`` is outside ``[0, total]``,
        ``log_every < 1`` or ``mode`` is not one of ``MODES``.

    Example:
      >>> bar = Progress(1000, initial=step, enabled=is_main)  # doctest: +SKIP
      >>> bar.update(step, {"train/loss": loss})  # doctest: +SKIP
    """

    def __init__(
        self,
        total: int,
        *,
        initial: int = 0,
        enabled: bool = True,
        mode: str = "auto",
        log_every: int | None = None,
        stream: TextIO | None = None,
        desc: str = "train",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not isinstance(total, int) or total < 0:
            raise ValueError(f"total must be an integer >= 0, got {total!r}.")
        if not isinstance(initial, int) or not 0 <= initial <= total:
            raise ValueError(
                f"initial must be an integer in [0, total={total}], got {initial!r}."
            )
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}.")
        if log_every is None:
            log_every = max(1, (total - initial) // 20)
        if not isinstance(log_every, int) or log_every < 1:
            raise ValueError(f"log_every must be an integer >= 1, got {log_every!r}.")
        self.total = total
        self.initial = initial
        self.log_every = log_every
        self.stream = sys.stdout if stream is None else stream
        self._clock = clock
        self._values: dict[str, float] = {}
        self._start: tuple[float, int] | None = None
        self._step = initial
        self._last_line_step: int | None = None
        self._bar: Any = None
        self._phase: tuple[str, int, int] | None = None
        if not enabled or mode == "off":
            self.mode = "off"
        elif mode == "auto":
            self.mode = "bar" if _is_terminal(self.stream) else "lines"
        else:
            self.mode = mode
        if self.mode == "bar":
            import tqdm

            self._bar = tqdm.tqdm(
                total=total,
                initial=initial,
                desc=desc,
                file=self.stream,
                dynamic_ncols=True,
                unit="step",
                smoothing=0.1,
            )

    def eta(self) -> float:
        """Seconds left, from the mean step time since the first update
        (``nan`` before two updates)."""
        if self._start is None:
            return math.nan
        begin_time, begin_step = self._start
        done = self._step - begin_step
        if done <= 0:
            return math.nan
        return (self._clock() - begin_time) / done * (self.total - self._step)

    def update(self, step: int, metrics: Mapping[str, Any] | None = None) -> None:
        """Moves to ``step`` (steps done) and records the latest ``metrics``.

        Args:
          step: optimizer updates completed, in ``[initial, total]``.
          metrics: any of ``train/loss``, ``eval/loss``, ``eval/bits_per_byte``,
            ``eval/accuracy``, ``train/lr``, ``train/tokens_per_sec`` (others are
            ignored); values are scalars. Missing ones keep their last value.

        Raises:
          ValueError: when ``step`` is outside ``[0, total]``.
        """
        step = int(step)
        if not 0 <= step <= self.total:
            raise ValueError(f"step must be in [0, total={self.total}], got {step}.")
        for name, label in SHOWN.items():
            if metrics is not None and name in metrics:
                self._values[label] = float(np.asarray(metrics[name]))
        if self._start is None:
            self._start = (self._clock(), step)
        self._step = step
        if self.mode == "bar":
            if self._phase is not None:
                self._bar.set_description_str(self._phase_text(), refresh=False)
            self._bar.set_postfix_str(self._postfix(), refresh=False)
            self._bar.update(step - self._bar.n)
        elif self.mode == "lines":
            due = step % self.log_every == 0 or step == self.total
            if due and step != self._last_line_step:
                self._print_line()

    def set_phase(self, label: str, first_step: int, steps: int) -> None:
        """Shows ``label`` and the step inside a phase of ``steps`` steps that
        starts at global step ``first_step`` (e.g. a task of a continual-learning
        stream: ``"task 2/5 (digits 2-3) 30/100"``)."""
        self._phase = (label, first_step, steps)
        if self.mode == "bar":
            self._bar.set_description_str(self._phase_text(), refresh=False)

    def _phase_text(self) -> str:
        label, first, steps = self._phase
        inside = min(max(self._step - first + 1, 0), steps)
        return f"{label} {inside}/{steps}"

    def _shown(self) -> list[str]:
        order = list(SHOWN.values())
        return [
            f"{label} {_format_value(label, self._values[label])}"
            for label in sorted(self._values, key=order.index)
        ]

    def _postfix(self) -> str:
        return ", ".join(self._shown())

    def line(self) -> str:
        """The current status as one line (what line mode prints)."""
        percent = 100.0 * self._step / self.total if self.total else 100.0
        parts = [f"step {self._step}/{self.total} ({percent:.1f}%)", *self._shown()]
        if self._phase is not None:
            parts.insert(0, self._phase_text())
        if self._step < self.total:
            parts.append(f"eta {format_duration(self.eta())}")
        return " | ".join(parts)

    def _print_line(self) -> None:
        self._last_line_step = self._step
        print(self.line(), file=self.stream, flush=True)

    def write(self, message: str) -> None:
        """Prints ``message`` on its own line without breaking the bar (shown
        in every mode except ``"off"``)."""
        if self.mode == "bar":
            self._bar.write(message, file=self.stream)
        elif self.mode == "lines":
            print(message, file=self.stream, flush=True)

    def close(self) -> None:
        """Finishes the display (in line mode, prints the last step if it was not
        printed); later calls show nothing."""
        if self._bar is not None:
            self._bar.set_postfix_str(self._postfix(), refresh=False)
            self._bar.close()
            self._bar = None
        elif self.mode == "lines" and self._start is not None:
            if self._last_line_step != self._step:
                self._print_line()
        self.mode = "off"

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _is_terminal(stream: TextIO) -> bool:
    if os.environ.get("TERM") == "dumb":
        return False
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
