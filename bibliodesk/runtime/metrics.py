"""Prometheus metrics in text format, without a dependency: RPC counts and latencies per method."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import defaultdict
from collections.abc import Callable

log = logging.getLogger(__name__)

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.rpc_total: dict[tuple[str, str, str], int] = defaultdict(int)
        self.rpc_buckets: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0] * (len(BUCKETS) + 1))
        self.rpc_sum: dict[tuple[str, str], float] = defaultdict(float)
        self.gauges: dict[str, Callable[[], float]] = {}

    def observe_rpc(self, service: str, method: str, code: str, seconds: float) -> None:
        with self._lock:
            self.rpc_total[(service, method, code)] += 1
            buckets = self.rpc_buckets[(service, method)]
            for i, bound in enumerate(BUCKETS):
                if seconds <= bound:
                    buckets[i] += 1
            buckets[-1] += 1
            self.rpc_sum[(service, method)] += seconds

    def gauge(self, name: str, read: Callable[[], float]) -> None:
        self.gauges[name] = read

    def render(self) -> str:
        lines = [
            "# HELP bibliodesk_rpc_total RPCs served, by final status code.",
            "# TYPE bibliodesk_rpc_total counter",
        ]
        with self._lock:
            for (service, method, code), count in sorted(self.rpc_total.items()):
                lines.append(
                    f'bibliodesk_rpc_total{{service="{service}",method="{method}",code="{code}"}} {count}'
                )
            lines += [
                "# HELP bibliodesk_rpc_duration_seconds RPC latency.",
                "# TYPE bibliodesk_rpc_duration_seconds histogram",
            ]
            for (service, method), buckets in sorted(self.rpc_buckets.items()):
                labels = f'service="{service}",method="{method}"'
                for bound, count in zip(BUCKETS, buckets, strict=False):
                    lines.append(f'bibliodesk_rpc_duration_seconds_bucket{{{labels},le="{bound}"}} {count}')
                lines.append(f'bibliodesk_rpc_duration_seconds_bucket{{{labels},le="+Inf"}} {buckets[-1]}')
                lines.append(
                    f"bibliodesk_rpc_duration_seconds_sum{{{labels}}} {self.rpc_sum[(service, method)]}"
                )
                lines.append(f"bibliodesk_rpc_duration_seconds_count{{{labels}}} {buckets[-1]}")
        typed: set[str] = set()
        for name, read in sorted(self.gauges.items()):
            try:
                value = read()
            except Exception:
                continue
            family = name.split("{", 1)[0]
            if family not in typed:  # one TYPE line per metric family, labels on the samples only
                typed.add(family)
                lines.append(f"# TYPE {family} gauge")
            lines.append(f"{name} {value}")
        return "\n".join(lines) + "\n"


async def serve_metrics(metrics: Metrics, listen: str) -> asyncio.Server:
    """A minimal HTTP endpoint: GET /metrics."""
    host, _, port = listen.rpartition(":")

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = await asyncio.wait_for(reader.readline(), 5)
            while (await asyncio.wait_for(reader.readline(), 5)) not in (b"\r\n", b"\n", b""):
                pass
            if request_line.split(b" ")[1:2] == [b"/metrics"]:
                body = metrics.render().encode()
                head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n"
            else:
                body, head = b"not found\n", b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\n"
            writer.write(head + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
            await writer.drain()
        except Exception:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, host or "0.0.0.0", int(port))
    log.info("metrics on http://%s/metrics", listen)
    return server
