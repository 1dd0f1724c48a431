"""The results: a rich table on the terminal, a JSON file and a PNG chart of latency distributions."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont
from rich.console import Console
from rich.table import Table

#: The issue's targets (16 clients, 2 cores).
P99_TARGETS_MS = {"check_in": 25.0, "inbox": 20.0, "search": 20.0}
RATIO_TARGETS = {"read": 0.50, "write": 0.25}


def verdicts(op: dict[str, Any]) -> list[str]:
    """Which targets the operation meets ("ok …") or misses ("MISS …")."""
    out = []
    target = P99_TARGETS_MS.get(op["name"])
    if target is not None and op["calls_ok"]:
        out.append(f"{'ok' if op['p99_ms'] < target else 'MISS'} p99<{target:g}ms")
    ratio_target = RATIO_TARGETS.get(op["kind"])
    if ratio_target is not None and op.get("ratio_to_ceiling") is not None and op["name"] != "login":
        ok = op["ratio_to_ceiling"] >= ratio_target
        out.append(f"{'ok' if ok else 'MISS'} ≥{ratio_target:.0%} of ceiling")
    return out


def print_table(results: dict[str, Any], console: Console) -> None:
    table = Table(
        title=f"bibliodesk bench — {results['db']} — {results['clients']} clients — "
        f"{results.get('topology', 'up')}",
        show_lines=False,
    )
    for col in (
        "op",
        "feature",
        "ops/s",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "errors",
        "ceiling ops/s",
        "ratio",
        "server CPU",
        "server peak RSS",
        "targets",
    ):
        table.add_column(col, justify="right" if col not in ("op", "feature", "targets") else "left")
    for op in results["operations"]:
        ceiling = op.get("ceiling", {})
        ratio = op.get("ratio_to_ceiling")
        table.add_row(
            op["name"] + (" (exhausted)" if op["exhausted"] else ""),
            op["feature"],
            f"{op['throughput_per_s']:.0f}",
            f"{op['p50_ms']:.1f}",
            f"{op['p95_ms']:.1f}",
            f"{op['p99_ms']:.1f}",
            str(op["errors"]),
            f"{ceiling.get('throughput_per_s', 0):.0f}",
            f"{ratio:.2f}" if ratio is not None else "-",
            f"{op['server']['cpu_cores']:.2f} cores",
            f"{op['server']['peak_rss_mb']:.0f} MB",
            ", ".join(verdicts(op)),
        )
    console.print(table)
    extra = results.get("password_hash", {})
    if extra:
        console.print(
            f"P6 log-in: argon2id verify alone costs {extra['verify_ms']:.0f} ms "
            f"(m={extra['memory_kib']} KiB, t={extra['time_cost']}); log-in p50 minus that = "
            f"{extra['login_p50_minus_hash_ms']:.1f} ms of service work."
        )
    idle = results.get("idle", {})
    if idle:
        console.print(_idle_line(results, idle))


def _topology(results: dict[str, Any]) -> str:
    if results.get("topology", "up") == "serve":
        return "one `serve` process per service"
    return "`up` (five services, one process)"


def _mb(value: float | None) -> str:
    return (
        "not measured (library loaded by a run of the other topology)" if value is None else f"{value:.0f} MB"
    )


def _idle_line(results: dict[str, Any], idle: dict[str, Any]) -> str:
    if results.get("topology", "up") == "serve":
        return (
            f"Idle, five `serve` processes together: {_mb(idle.get('rss_mb_empty'))} RSS empty, "
            f"{idle.get('rss_mb_loaded', 0):.0f} MB with the library (the < 250 MB target is for `up`)."
        )
    return (
        f"Idle `bibliodesk up` (5 services, one process): {_mb(idle.get('rss_mb_empty'))} RSS "
        f"on an empty library, {idle.get('rss_mb_loaded', 0):.0f} MB after loading and restarting "
        "(target < 250 MB)."
    )


def write_json(results: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")


PALETTE = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
]


def write_chart(results: dict[str, Any], latencies: dict[str, list[float]], path: Path) -> None:
    """Latency distributions (CDF, log-scaled latency axis): one curve per operation, the
    empty-handler ceiling dashed grey."""
    width, height = 1100, 640
    left, right, top, bottom = 80, 300, 50, 70
    img = Image.new("RGB", (width, height), "white")
    d = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    all_values = [v for xs in latencies.values() for v in xs if v > 0]
    if not all_values:
        all_values = [1.0]
    lo = 10 ** math.floor(math.log10(max(min(all_values), 0.01)))
    hi = 10 ** math.ceil(math.log10(max(all_values)))
    if hi <= lo:
        hi = lo * 10

    def x_of(ms: float) -> float:
        ms = min(max(ms, lo), hi)
        return left + (math.log10(ms) - math.log10(lo)) / (math.log10(hi) - math.log10(lo)) * (
            width - left - right
        )

    def y_of(q: float) -> float:
        return top + (1 - q) * (height - top - bottom)

    d.rectangle([left, top, width - right, height - bottom], outline=(0, 0, 0))
    decade = lo
    while decade <= hi * 1.0001:
        for m in (1, 2, 5):
            v = decade * m
            if lo <= v <= hi:
                x = x_of(v)
                d.line([x, top, x, height - bottom], fill=(225, 225, 225) if m != 1 else (190, 190, 190))
                label = f"{v:g}"
                d.text((x - 3 * len(label), height - bottom + 6), label, fill=(0, 0, 0), font=font)
        decade *= 10
    for q in (0.5, 0.95, 0.99):
        y = y_of(q)
        d.line([left, y, width - right, y], fill=(200, 200, 200))
        d.text((left - 40, y - 6), f"p{round(q * 100)}", fill=(0, 0, 0), font=font)
    for q in (0.0, 0.25, 0.75):
        d.text((left - 40, y_of(q) - 6), f"{q:.2f}", fill=(90, 90, 90), font=font)
    d.text(
        (left + (width - left - right) // 2 - 60, height - 30),
        "latency (ms, log scale)",
        fill=(0, 0, 0),
        font=font,
    )
    title = (
        f"bibliodesk bench: latency distribution per operation - {results['db']}, "
        f"{results['clients']} clients, {results['duration_s']:g}s each"
    )
    d.text((left, 18), title, fill=(0, 0, 0), font=font)
    legend_y = top
    op_index = 0
    for name, values in latencies.items():
        if not values:
            continue
        xs = sorted(values)
        if name.startswith("ceiling"):
            colour = (150, 150, 150)
        else:
            colour = PALETTE[op_index % len(PALETTE)]
            op_index += 1
        points = []
        step = max(1, len(xs) // 600)
        for k in range(0, len(xs), step):
            points.append((x_of(xs[k]), y_of((k + 1) / len(xs))))
        points.append((x_of(xs[-1]), y_of(1.0)))
        if name.startswith("ceiling"):
            for a, b in zip(points[::2], points[1::2], strict=False):
                d.line([a, b], fill=colour, width=2)
        else:
            d.line(points, fill=colour, width=2)
        d.rectangle([width - right + 15, legend_y + 3, width - right + 35, legend_y + 9], fill=colour)
        p99 = xs[min(len(xs) - 1, math.ceil(0.99 * len(xs)) - 1)]
        d.text((width - right + 42, legend_y), f"{name}  p99 {p99:.1f} ms", fill=(0, 0, 0), font=font)
        legend_y += 18
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, "PNG")


def _per_call(op: dict[str, Any]) -> str:
    server = op["server"]
    if "cpu_ms_per_call" in server:
        return f"{server['cpu_ms_per_call']:.1f}"
    if op["throughput_per_s"] > 0:  # results written before the field existed
        return f"{server['cpu_cores'] / op['throughput_per_s'] * 1000:.1f}"
    return "-"


def markdown(results: dict[str, Any]) -> str:
    """The results as a Markdown table (for bench/README.md): ``python -m bench.report FILE.json``."""
    sizes = results["sizes"]
    lines = [
        f"**{results['db']}**, {sizes['patrons']:,} patrons, {sizes['items']:,} items, "
        f"{sizes['past_requests']:,} past requests; {results['clients']} clients, "
        f"{results['duration_s']:g} s per operation; topology: {_topology(results)}; "
        f"patches: {', '.join(results.get('patches') or []) or 'none'}; "
        f"run {results['started_at']}",
        "",
        "| op | feature | ops/s | p50 ms | p95 ms | p99 ms | errors | ceiling ops/s | ratio | server CPU "
        "| CPU ms/call | peak RSS | targets |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    for op in results["operations"]:
        ratio = op.get("ratio_to_ceiling")
        lines.append(
            f"| {op['name']}{' (exhausted)' if op['exhausted'] else ''} | {op['feature']} | "
            f"{op['throughput_per_s']:.1f} | {op['p50_ms']:.1f} | {op['p95_ms']:.1f} | {op['p99_ms']:.1f} | "
            f"{op['errors']} | {op['ceiling']['throughput_per_s']:.0f} | "
            f"{'-' if ratio is None else f'{ratio:.3f}'} | {op['server']['cpu_cores']:.2f} | "
            f"{_per_call(op)} | "
            f"{op['server']['peak_rss_mb']:.0f} MB | {', '.join(verdicts(op))} |"
        )
    load = results.get("load", {})
    idle = results.get("idle", {})
    pw = results.get("password_hash", {})
    lines.append("")
    if load:
        lines.append(
            f"Load: {load.get('rows_total', 0):,} rows in {load.get('seconds')} s wall"
            + (f", {load['loader_cpu_seconds']} s loader CPU" if "loader_cpu_seconds" in load else "")
            + "."
        )
    if idle:
        lines.append(_idle_line(results, idle))
    if pw:
        lines.append(
            f"argon2id verify alone (m={pw['memory_kib']} KiB, t={pw['time_cost']}): {pw['verify_ms']} ms "
            "in the bench process during the run."
        )
    return "\n".join(lines)


if __name__ == "__main__":
    import sys

    for name in sys.argv[1:]:
        print(markdown(json.loads(Path(name).read_text())))
        print()
