"""The bench harness: figures over rounds, the table the README is pasted from, the zip row
on a tree without node_modules, and the CPU a server spends per request."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from bench import deploy, load, servers
from bench.__main__ import table
from bench.spread import shown, spread

ROOT = Path(__file__).resolve().parents[1]


def test_a_figure_is_the_median_of_its_rounds_with_their_range() -> None:
    figures = spread("ms", [9.0, 2.0, 4.0, 30.0, 5.0])
    assert figures == {"ms": 5.0, "ms_min": 2.0, "ms_max": 30.0}
    assert shown(figures, "ms", unit=" ms") == "5.0 ms (min 2.0, max 30.0)"
    with pytest.raises(ValueError, match="no rounds"):
        spread("ms", [])


def test_the_table_has_the_readmes_columns_and_a_cell_cannot_split() -> None:
    printed = table(
        [("a figure", "1 ms (min 1, max 2)", "≤ 5 ms", True), ("zip", "a | b", "≤ 3 MB", False)]
    ).splitlines()
    readme = (ROOT / "README.md").read_text().split("## Performance", 1)[1]
    head = [line for line in readme.splitlines() if line.startswith("|")][:2]
    assert printed[:2] == head
    assert printed[2] == "| a figure | 1 ms (min 1, max 2) | ≤ 5 ms | met |"
    assert printed[3] == "| zip | a \\| b | ≤ 3 MB | MISSED |"
    for line in printed[2:]:
        assert len(re.split(r"(?<!\\)\|", line)) == 6, line  # four cells between the bars


def test_a_tree_without_sls_nor_npm_is_a_reason_not_a_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))  # no npm, no npx
    with pytest.raises(deploy.NotPackaged, match=r"no node_modules/\.bin/sls and no npm"):
        deploy.zip_size(tmp_path)


def test_a_failing_tool_is_a_reason_with_its_last_lines(tmp_path: Path) -> None:
    with pytest.raises(deploy.NotPackaged, match=r"sls package failed \(3\): last words"):
        deploy._run(
            ["sh", "-c", "echo noise; echo last words >&2; exit 3"], tmp_path, "sls package"
        )


def test_cpu_seconds_grow_with_the_work_done() -> None:
    before = load.cpu_s([os.getpid()])
    sum(i * i for i in range(3_000_000))
    assert load.cpu_s([os.getpid()]) - before > 0.05


def test_wrk_rounds_add_up_requests_and_errors_and_spread_the_rest() -> None:
    rounds = [
        {"requests_per_s": 100.0, "requests": 300.0, "errors": 0.0, "p99_ms": 4.0},
        {"requests_per_s": 300.0, "requests": 900.0, "errors": 2.0, "p99_ms": 9.0},
        {"requests_per_s": 200.0, "requests": 600.0, "errors": 1.0, "p99_ms": 5.0},
    ]
    figures = load.summed(rounds)
    assert figures["requests"] == 1800 and figures["errors"] == 3
    assert (figures["requests_per_s_min"], figures["requests_per_s"]) == (100, 200)
    assert (figures["p99_ms"], figures["p99_ms_max"]) == (5, 9)
    assert servers.describe(figures).startswith("200/s (min 100, max 300), 3 errors, p99 5.0 ms")


def test_gimels_share_is_taken_per_rounds_pair() -> None:
    def rates(*values: float) -> dict[int, list[dict[str, float]]]:
        return {16: [{"requests_per_s": v} for v in values]}

    # A slow second round slows both: the pairs agree, the medians of each would not.
    fraction = servers.gimel_fraction(
        {servers.GIMEL: rates(30, 10, 40), servers.NOOP: rates(100, 20, 80)}
    )
    assert fraction == {"fraction": 0.5, "fraction_min": 0.3, "fraction_max": 0.5}


@pytest.mark.slow
def test_gimel_serve_under_wrk_reports_its_cpu_per_request() -> None:
    figures = load.run(seconds=1, rounds=2, workers=1)
    assert figures["errors"] == 0
    assert figures["requests"] > 100
    for key in ("requests_per_s", "p99_ms", "cpu_us", "redis_cpu_us"):
        assert figures[f"{key}_min"] <= figures[key] <= figures[f"{key}_max"], key
    # A /track costs tens to hundreds of µs of the server's CPU, never nothing.
    assert 5 < figures["cpu_us"] < 20_000
    assert 0 < figures["redis_cpu_us"] < figures["cpu_us"]


@pytest.mark.slow
def test_the_zip_is_packaged_afresh_not_read_from_a_stale_folder(tmp_path: Path) -> None:
    if not (ROOT / deploy.SLS).exists():
        pytest.skip("no node_modules here: make node_modules")
    from bench.compare import export

    tree = export("HEAD", tmp_path / "tree")
    stale = tree / ".serverless"
    stale.mkdir()
    (stale / "gimel.zip").write_bytes(b"an older revision's package")
    # The stale zip holds 27 bytes: a size of a real package says this tree was packaged.
    assert 500_000 < deploy.zip_size(tree) < 3_000_000
