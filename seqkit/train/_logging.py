"""Metrics to JSONL and a progress line on stderr (the trainer owns output)."""

import json
import math
import os
import sys
import time
from typing import Any

import numpy as np


class MetricsLog:
    """Append-only JSONL file of metric records (one dict per line, each with `step`).

    A resumed run cuts the log back to what it held at the checkpoint it resumes
    from (`truncate`), then logs the rest again, so the file reads as one run.
    With `enabled=False` (the processes other than the first of a multi-process
    run) `size` is `None` and `truncate` and `write` do nothing.
    """

    def __init__(self, path: str | os.PathLike, *, enabled: bool = True):
        self.path = os.fspath(path)
        self.enabled = enabled

    def size(self) -> int | None:
        """The log's length in bytes (0 before the first record), for a checkpoint
        to note; `None` when disabled."""
        if not self.enabled:
            return None
        return os.path.getsize(self.path) if os.path.exists(self.path) else 0

    def truncate(self, step: int, *, size: int | None = None) -> None:
        """Cut the log back to its first `size` bytes (what a checkpoint noted
        with `size()`: one `os.truncate`, nothing rewritten), or, with no `size`
        (a fresh start, `step=-1`, or a checkpoint that noted none), keep the
        records up to `step` (rewritten through a temporary file and `os.replace`,
        so a kill leaves the old log or the new one)."""
        if not self.enabled or not os.path.exists(self.path):
            return
        if size is not None:
            if size < os.path.getsize(self.path):
                os.truncate(self.path, size)
            return
        keep = []
        with open(self.path) as f:
            for line in f:
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    break  # a line cut short by a kill: everything after it is gone too
                if rec.get("step", 0) <= step:
                    keep.append(line if line.endswith("\n") else line + "\n")
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            f.writelines(keep)
        os.replace(tmp, self.path)

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()

    def read(self) -> list[dict[str, Any]]:
        with open(self.path) as f:
            return [json.loads(line) for line in f if line.strip()]


class TrainWindow:
    """The training steps since the last train record: their metrics (kept as the
    step returned them, so logging does not wait on each step) and the time they
    took, evaluations excluded.

    A checkpoint taken inside a window notes it (`carry`: the step count, the
    metric sums, the seconds), and the resumed run starts from that note, so the
    next record averages the same steps, at the same throughput, as an
    uninterrupted run's. Metrics are scalars (`train`) or per-member vectors (a
    sweep).
    """

    def __init__(self, carried: dict[str, Any] | None = None):
        carried = carried or {"count": 0, "sums": {}, "seconds": 0.0}
        self.steps: list[dict[str, Any]] = []
        self.count = int(carried["count"])
        self.sums = {k: np.asarray(v, np.float64) for k, v in carried["sums"].items()}
        self.seconds = float(carried["seconds"])
        self.t0 = time.perf_counter()

    def add(self, metrics: dict[str, Any]) -> None:
        self.steps.append(metrics)

    def __len__(self) -> int:
        return self.count + len(self.steps)

    def pause(self, seconds: float) -> None:
        """Leave `seconds` spent outside training (an evaluation) out of the throughput."""
        self.t0 += seconds

    def _sums(self) -> dict[str, np.ndarray]:
        keys = self.steps[0] if self.steps else self.sums
        out = {}
        for k in keys:
            total = np.sum([np.asarray(m[k], np.float64) for m in self.steps], axis=0)
            out[k] = np.asarray(total + self.sums[k] if k in self.sums else total)
        return out

    def means(self) -> dict[str, np.ndarray]:
        """Each metric's mean over the window's steps (a float64 scalar or vector)."""
        return {k: np.asarray(v / len(self)) for k, v in self._sums().items()}

    def examples_per_s(self, examples_per_step: int) -> float:
        seconds = self.seconds + time.perf_counter() - self.t0
        return len(self) * examples_per_step / max(seconds, 1e-9)

    def carry(self) -> dict[str, Any]:
        """The window so far, as JSON for a checkpoint's header."""
        return {
            "count": len(self),
            "sums": {k: np.asarray(v).tolist() for k, v in self._sums().items()} if len(self) else {},
            "seconds": self.seconds + time.perf_counter() - self.t0,
        }


def format_duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


class Progress:
    """A progress line on stderr: step, loss, accuracy, throughput, ETA.

    On a terminal the line is redrawn in place; otherwise (logs, CI) it is printed
    as plain lines. `silent` prints nothing at all, notices included (the
    processes other than the first of a multi-process run).
    """

    def __init__(self, total: int, *, stream=None, enabled: bool = True, silent: bool = False):
        self.total = total
        self.stream = sys.stderr if stream is None else stream
        self.silent = silent
        self.enabled = enabled and not silent
        self.tty = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.t0 = time.perf_counter()
        self.start_step = None

    def update(self, step: int, *, loss: float, accuracy: float, examples_per_s: float) -> None:
        if not self.enabled:
            return
        if self.start_step is None:
            self.start_step = step
            self.t0 = time.perf_counter()
        elapsed = time.perf_counter() - self.t0
        done = step - self.start_step
        if step >= self.total:
            eta = 0.0
        else:
            eta = (self.total - step) * elapsed / done if done > 0 else float("nan")
        width = len(str(self.total))
        # NaN: an objective with no accuracy (masked-patch pretraining).
        acc = "" if math.isnan(accuracy) else f"acc {100 * accuracy:5.1f}% | "
        line = (
            f"step {step:>{width}}/{self.total} | loss {loss:.4f} | {acc}"
            f"{examples_per_s:,.0f} ex/s | ETA {format_duration(eta)}"
        )
        if self.tty:
            frac = step / max(self.total, 1)
            bar = "#" * int(20 * frac) + "-" * (20 - int(20 * frac))
            self.stream.write(f"\r[{bar}] {line}\033[K")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def message(self, text: str) -> None:
        """A line of progress (compiling, evaluation results); nothing when disabled."""
        if self.enabled:
            self.notice(text)

    def notice(self, text: str) -> None:
        """A line the user must see even without progress output (a fresh start
        under `--resume`, a finished run, removed temporaries)."""
        if self.silent:
            return
        self.stream.write(("\r\033[K" if self.tty else "") + text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
