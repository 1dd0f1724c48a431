"""Runs ``clients`` concurrent grpc.aio callers for a fixed duration and measures each call."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc

from .ops import Exhausted


@dataclass
class Measured:
    latencies_ms: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    error_samples: list[str] = field(default_factory=list)
    seconds: float = 0.0
    exhausted: bool = False

    @property
    def ok(self) -> int:
        return len(self.latencies_ms)

    @property
    def throughput(self) -> float:
        return self.ok / self.seconds if self.seconds > 0 else 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies_ms:
            return 0.0
        xs = sorted(self.latencies_ms)
        k = min(len(xs) - 1, max(0, round(q / 100 * len(xs) + 0.5) - 1))
        return xs[k]

    def summary(self) -> dict[str, Any]:
        return {
            "calls_ok": self.ok,
            "errors": sum(self.errors.values()),
            "errors_by_code": dict(self.errors),
            "error_samples": self.error_samples[:5],
            "seconds": round(self.seconds, 3),
            "throughput_per_s": round(self.throughput, 1),
            "p50_ms": round(self.percentile(50), 2),
            "p95_ms": round(self.percentile(95), 2),
            "p99_ms": round(self.percentile(99), 2),
            "max_ms": round(max(self.latencies_ms), 2) if self.latencies_ms else 0.0,
            "exhausted": self.exhausted,
        }


async def drive(
    call: Callable[[int, int], Awaitable[Any]],
    *,
    clients: int,
    duration: float,
    warmup: float = 0.0,
) -> Measured:
    """``call(client_index, sequence_number)`` from ``clients`` tasks, back to back, for
    ``warmup + duration`` seconds; only calls started after the warm-up are measured."""
    seq = itertools.count()
    out = Measured()
    start = time.perf_counter()
    measure_from = start + warmup
    stop_at = measure_from + duration
    last_end = [measure_from]

    async def client(c: int) -> None:
        while True:
            t0 = time.perf_counter()
            if t0 >= stop_at:
                return
            n = next(seq)
            try:
                await call(c, n)
            except Exhausted:
                out.exhausted = True
                return
            except grpc.aio.AioRpcError as exc:
                t1 = time.perf_counter()
                if t0 >= measure_from:
                    out.errors[exc.code().name] += 1
                    if len(out.error_samples) < 5:
                        out.error_samples.append(f"{exc.code().name}: {exc.details()}")
                    last_end[0] = max(last_end[0], t1)
                continue
            t1 = time.perf_counter()
            if t0 >= measure_from:
                out.latencies_ms.append((t1 - t0) * 1000.0)
                last_end[0] = max(last_end[0], t1)

    await asyncio.gather(*(client(c) for c in range(clients)))
    out.seconds = max(0.0, min(last_end[0], time.perf_counter()) - measure_from)
    return out
