"""A wall-clock sampling profiler over every thread of ``bibliodesk up`` (no extra package).

    python -m bench.sampler OUT.txt up [args...]     (OUT "-": no sampling, only $BENCH_PATCHES)

runs the program as ``bibliodesk up`` would, with a thread that every few milliseconds records
the Python stack of every other thread (``sys._current_frames``). SIGUSR1 clears the samples (the
bench sends it when the profiled operation starts), SIGUSR2 writes the report to OUT.txt (when it
ends). A thread blocked in C (a SQLite call, a socket) shows the Python frame that called it, so
the report is "where the wall time of the busy threads goes", split into the event loop thread
(gRPC handlers, proto conversion, interceptors) and the worker threads (database work). Idle
threads (waiting for work) are left out.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from types import FrameType

INTERVAL = 0.004
IDLE_LEAVES = {
    ("threading.py", "wait"),
    ("queue.py", "get"),
    ("selectors.py", "select"),
    ("thread.py", "_worker"),
    ("threading.py", "_wait_for_tstate_lock"),
    ("threading.py", "run"),  # a thread running C code only (gRPC's poller): nothing to attribute
}


def _frames(frame: FrameType | None) -> list[tuple[str, int, str]]:
    out = []
    while frame is not None:
        out.append((frame.f_code.co_filename, frame.f_lineno, frame.f_code.co_name))
        frame = frame.f_back
    out.reverse()
    return out


def _short(filename: str) -> str:
    for marker in ("/work/main/", "site-packages/", "/lib/python3"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


class Sampler:
    def __init__(self, out: Path) -> None:
        self.out = out
        self.lock = threading.Lock()
        self.inclusive: dict[str, Counter[str]] = {"loop": Counter(), "workers": Counter()}
        self.leaf: dict[str, Counter[str]] = {"loop": Counter(), "workers": Counter()}
        self.samples = {"loop": 0, "workers": 0}
        self.idle = 0
        self.started = time.monotonic()
        self.main_ident = threading.main_thread().ident
        self.stop = threading.Event()

    def reset(self) -> None:
        with self.lock:
            for c in (*self.inclusive.values(), *self.leaf.values()):
                c.clear()
            self.samples = {"loop": 0, "workers": 0}
            self.idle = 0
            self.started = time.monotonic()

    def run(self) -> None:
        me = threading.get_ident()
        while not self.stop.is_set():
            frames = sys._current_frames()
            with self.lock:
                for ident, frame in frames.items():
                    if ident == me:
                        continue
                    stack = _frames(frame)
                    if not stack:
                        continue
                    leaf_file, _, leaf_fn = stack[-1]
                    if (Path(leaf_file).name, leaf_fn) in IDLE_LEAVES:
                        self.idle += 1
                        continue
                    kind = "loop" if ident == self.main_ident else "workers"
                    self.samples[kind] += 1
                    seen = set()
                    for filename, _, fn in stack:
                        key = f"{_short(filename)}:{fn}"
                        if key not in seen:
                            seen.add(key)
                            self.inclusive[kind][key] += 1
                    filename, line, fn = stack[-1]
                    self.leaf[kind][f"{_short(filename)}:{line}:{fn}"] += 1
            time.sleep(INTERVAL)

    def write(self) -> None:
        with self.lock:
            seconds = time.monotonic() - self.started
            lines = [
                f"wall-clock samples every {INTERVAL * 1000:.0f} ms over {seconds:.1f} s (idle {self.idle})"
            ]
            for kind in ("loop", "workers"):
                total = self.samples[kind] or 1
                lines.append("")
                lines.append(
                    f"== {kind}: {self.samples[kind]} busy samples; inclusive (% of busy {kind} samples)"
                )
                for key, n in self.inclusive[kind].most_common(45):
                    lines.append(f"{100 * n / total:6.1f}%  {key}")
                lines.append(f"-- {kind}: leaf lines")
                for key, n in self.leaf[kind].most_common(25):
                    lines.append(f"{100 * n / total:6.1f}%  {key}")
        self.out.write_text("\n".join(lines) + "\n")


def main() -> int:
    import os

    from .patches import apply

    apply(os.environ.get("BENCH_PATCHES", ""))
    out = Path(sys.argv[1])
    sampler = Sampler(out)
    if sys.argv[1] != "-":  # "-": no sampling (only the patches)
        signal.signal(signal.SIGUSR1, lambda *_: sampler.reset())
        signal.signal(signal.SIGUSR2, lambda *_: sampler.write())
        thread = threading.Thread(target=sampler.run, name="bench-sampler", daemon=True)
        thread.start()
    from bibliodesk.cli.main import main as bibliodesk_main

    try:
        return bibliodesk_main(sys.argv[2:])
    finally:
        sampler.stop.set()


if __name__ == "__main__":
    sys.exit(main())
