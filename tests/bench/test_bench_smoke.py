"""The benchmark program itself: a tiny library, one second per operation, real ``bibliodesk up``.

Nothing here asserts a timing: only that the run completes, every operation was really served
(calls succeeded, no errors), and the results file and chart hold what the README promises.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from pathlib import Path

import pytest
from PIL import Image

from bench import run
from bench.dataset import Layout
from bench.load import expected_rows
from bench.ops import ORDER
from services.patrons.domain.cards import luhn_check_digit
from services.patrons.domain.names import fold, search_key


def test_generated_rows_match_the_services_rules() -> None:
    layout = Layout(patrons=5000, items=4000, requests=100, seed=3, now=datetime.now(UTC))
    layout.check()
    rng = random.Random(7)
    for i in [0, 1, layout.patrons - 1, *rng.sample(range(layout.patrons), 300)]:
        card = layout.patron_card(i)
        assert card == card[:-1] + luhn_check_digit(card[:-1])
        row = layout.patron_row(i)
        surname, given = layout.patron_name(i)
        assert row[5] == search_key(surname, given) and row[6] == fold(given)
    # web submissions: enrolled patrons outside the prepared ranges, never the same (patron, item)
    pairs = set()
    for n in range(3 * layout.submitters):
        patron = layout.submitter(n)
        assert layout.patron_enrolled(patron) and patron >= layout.first_other_patron
        pairs.add((patron, layout.shelf_item(n)))
    assert len(pairs) == 3 * layout.submitters
    # the consumable pools do not overlap
    v6_items = {layout.v6_item(k)[0] for k in range(layout.pool)}
    v4_items = {layout.v4_item(k) for k in range(layout.pool)}
    assert not v4_items & v6_items and len(v6_items) == len(v4_items) == layout.pool
    assert expected_rows(layout)["patrons"] == layout.patrons


def test_too_small_a_library_is_refused_with_the_flag_to_raise() -> None:
    with pytest.raises(ValueError, match="--patrons"):
        Layout(patrons=10, items=2000, requests=10, seed=1, now=datetime.now(UTC)).check()


@pytest.mark.timeout(240)
def test_tiny_run_reports_every_operation(tmp_path: Path) -> None:
    results_dir = tmp_path / "results"
    code = run.main(
        [
            "--patrons", "100", "--items", "200", "--requests", "300",
            "--duration", "1", "--warmup", "0", "--ceiling-duration", "0.5", "--clients", "4",
            "--idle-settle", "0.2", "--settle-timeout", "10",
            "--argon2-memory-kib", "8192", "--argon2-time-cost", "1",
            "--results", str(results_dir),
        ]
    )  # fmt: skip
    assert code == 0
    [json_path] = results_dir.glob("*-sqlite.json")
    [png_path] = results_dir.glob("*-sqlite.png")
    results = json.loads(json_path.read_text())

    assert results["sizes"]["patrons"] == 100
    assert results["load"]["rows"]["patrons"] == 100
    assert results["load"]["rows"]["inbox requests"] == 300 + results["sizes"]["pool_per_consumable_op"]
    assert results["idle"]["rss_mb_empty"] > 0 and results["idle"]["rss_mb_loaded"] > 0
    ops = {op["name"]: op for op in results["operations"]}
    assert list(ops) == list(ORDER)
    for name, op in ops.items():
        assert op["calls_ok"] > 0, (name, op["error_samples"])
        assert op["errors"] == 0, (name, op["error_samples"])
        assert 0 < op["p50_ms"] <= op["p95_ms"] <= op["p99_ms"] <= op["max_ms"], name
        assert op["throughput_per_s"] > 0, name
        assert op["ceiling"]["calls_ok"] > 0 and op["ceiling"]["errors"] == 0, name
        assert op["ceiling"]["request_bytes"] > 0 and op["ceiling"]["response_bytes"] > 0, name
        assert op["ratio_to_ceiling"] > 0, name
        assert op["server"]["cpu_seconds"] > 0 and op["server"]["peak_rss_mb"] > 0, name
    # consumable operations stop when their prepared rows are used up, and say so
    pool = results["sizes"]["pool_per_consumable_op"]
    for name in ("advance", "check_in", "check_out"):
        assert ops[name]["calls_ok"] <= pool
    assert results["password_hash"]["verify_ms"] > 0
    with Image.open(png_path) as image:
        assert image.format == "PNG" and image.size[0] > 500


@pytest.mark.timeout(240)
def test_serve_topology_runs_one_process_per_service(tmp_path: Path) -> None:
    results_dir = tmp_path / "results"
    code = run.main(
        [
            "--patrons", "100", "--items", "200", "--requests", "300", "--topology", "serve",
            "--ops", "search,check_in", "--duration", "1", "--warmup", "0", "--ceiling-duration", "0.5",
            "--clients", "4", "--idle-settle", "0.2", "--settle-timeout", "10",
            "--argon2-memory-kib", "8192", "--argon2-time-cost", "1", "--results", str(results_dir),
        ]
    )  # fmt: skip
    assert code == 0
    [json_path] = results_dir.glob("*-sqlite.json")
    results = json.loads(json_path.read_text())
    assert results["topology"] == "serve"
    assert results["idle"]["ok"] is None  # the 250 MB target is for `up`, not for five processes
    for op in results["operations"]:
        assert op["calls_ok"] > 0 and op["errors"] == 0, (op["name"], op["error_samples"])
        by_process = op["server"]["cpu_cores_by_process"]
        assert set(by_process) == {"patrons", "requests", "reservations", "notify", "device_gateway"}
        assert by_process[op["service"]] > 0, (op["name"], by_process)  # its own service served it
        assert abs(sum(by_process.values()) - op["server"]["cpu_cores"]) < 0.05
