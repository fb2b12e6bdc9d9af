"""What every benchmark records next to its figures: the machine, the versions, the exact command."""

from __future__ import annotations

import hashlib
import os
import shlex
import threading
from pathlib import Path
from typing import Any

import zigprune as zp
from zigprune.measure.machine import machine_info as measure_machine

REPO = Path(__file__).resolve().parents[1]


def source_digest() -> str:
    """SHA-256 over the imported zigprune package's .py files (the code under test is not versioned)."""
    root = Path(zp.__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def machine_info() -> dict[str, Any]:
    """The machine, threads and versions (zigprune's own recipe), plus the source digest of the code run."""
    return measure_machine() | {"zigprune_source_sha256": source_digest(), "device": "cpu"}


def command_line(script: str | Path, argv: list[str]) -> str:
    """The shell command that reruns ``script`` with ``argv`` from the repository root."""
    path = Path(script).resolve()
    try:
        shown = path.relative_to(REPO).as_posix()
    except ValueError:
        shown = str(path)
    return " ".join(["PYTHONPATH=src", "python", shown, *map(shlex.quote, argv)])


def goal_line(text: str, met: bool) -> str:
    """A goal as a Markdown bullet: the figure that decides it, then met or **not met**."""
    return f"- {text}: {'met' if met else '**not met**'}"


def _statm() -> tuple[int, int] | None:
    """Resident and file-backed resident bytes of this process (Linux), or None elsewhere."""
    try:
        with open("/proc/self/statm") as f:
            fields = f.read().split()
        page = os.sysconf("SC_PAGE_SIZE")
        return int(fields[1]) * page, int(fields[2]) * page
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def high_water_mib() -> float:
    """This process image's peak resident set so far (``VmHWM``, exact, where ``MemoryPeak`` samples a
    stretch of the run). Not ``ru_maxrss``: a child started by ``subprocess`` inherits into it the
    parent's peak from before its ``exec``."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024


class MemoryPeak:
    """A thread sampling this process's memory every ``interval`` seconds until ``stop()``: the start and
    peak resident set, and the peak anonymous part (resident minus file-backed pages: memory-mapped
    checkpoint pages count in the resident set but are page cache the kernel drops under pressure).
    Figures in bytes; None where ``/proc`` is missing."""

    def __init__(self, interval: float = 0.005) -> None:
        first = _statm()
        self.start_rss = first[0] if first else None
        self.peak_rss = self.start_rss
        self.peak_anon = first[0] - first[1] if first else None
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        if first:
            self._thread.start()

    def _sample(self) -> None:
        while True:
            self._take()
            if self._stop.wait(self.interval):
                return

    def _take(self) -> None:
        now = _statm()
        if now and self.peak_rss is not None and self.peak_anon is not None:
            self.peak_rss = max(self.peak_rss, now[0])
            self.peak_anon = max(self.peak_anon, now[0] - now[1])

    def stop(self) -> MemoryPeak:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self._take()
        return self
