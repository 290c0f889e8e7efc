"""Metrics to JSONL and a progress line on stderr (the trainer owns output)."""

import json
import math
import os
import sys
import time
from typing import Any


class MetricsLog:
    """Append-only JSONL file of metric records (one dict per line, each with `step`).

    `truncate(step)` drops records past `step`: a resumed run rewrites what the
    killed run logged after its last checkpoint, so the file reads as one run.
    With `enabled=False` (the processes other than the first of a multi-process
    run) `truncate` and `write` do nothing.
    """

    def __init__(self, path: str | os.PathLike, *, enabled: bool = True):
        self.path = os.fspath(path)
        self.enabled = enabled

    def truncate(self, step: int) -> None:
        if not self.enabled or not os.path.exists(self.path):
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
        with open(self.path, "w") as f:
            f.writelines(keep)

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()

    def read(self) -> list[dict[str, Any]]:
        with open(self.path) as f:
            return [json.loads(line) for line in f if line.strip()]


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
