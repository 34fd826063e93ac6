"""Before and after in one run: the per-event figures of a git revision and of this tree.

    python -m bench.compare REV [--rounds 3] [--zip]

Runs each figure for both trees alternately (so a noisy machine slows both alike), in fresh
interpreters, against one embedded redis-server: `/track` through ``handler.handler`` and its
ratio to a redis-py PFADD loop, and the cold-start ratio; with ``--zip``, the Lambda package
size too (``sls package`` of each tree). Prints one Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path

from gimel_core.embedded import EmbeddedRedis

from . import deploy

ROOT = Path(__file__).resolve().parent.parent

FIGURES = """
import json, sys
from bench import deploy, track
single = track.handler_vs_pfadd(sys.argv[1], count=10_000)
cold = deploy.cold_start(runs=5)
print(json.dumps({"single": single, "cold": cold}))
"""


def export(rev: str, into: Path) -> Path:
    """The files of ``rev`` (git archive) in a folder, sharing this tree's node_modules."""
    archive = subprocess.run(["git", "archive", rev], cwd=ROOT, check=True, capture_output=True)
    with tarfile.open(fileobj=BytesIO(archive.stdout)) as tar:
        tar.extractall(into, filter="data")
    (into / "node_modules").symlink_to(ROOT / "node_modules")
    return into


def measure(tree: Path, url: str) -> dict[str, dict[str, float]]:
    """The figures of one tree, measured by that tree's own bench package."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIMEL_")}
    env["PYTHONPATH"] = str(tree)
    out = subprocess.run(
        [sys.executable, "-c", FIGURES, url], cwd=tree, env=env, check=True, capture_output=True
    ).stdout
    return json.loads(out.decode().strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("rev", help="the git revision to compare with (e.g. main~3)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--zip", action="store_true", help="also package both trees")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        before = export(args.rev, Path(folder) / "before")
        server = EmbeddedRedis(Path(folder) / "redis").start()
        runs: dict[str, list[dict[str, dict[str, float]]]] = {"before": [], "after": []}
        try:
            for round_ in range(args.rounds):
                order = [("before", before), ("after", ROOT)]
                for name, tree in order if round_ % 2 == 0 else reversed(order):
                    runs[name].append(measure(tree, server.url))
                    one = runs[name][-1]["single"]
                    print(
                        f"  round {round_ + 1}, {name}: handler {one['handler_events_per_s']:,.0f}"
                        f"/s, PFADD {one['pfadd_per_s']:,.0f}/s",
                        file=sys.stderr,
                        flush=True,
                    )
        finally:
            server.stop()
        sizes = (
            {"before": deploy.zip_size(before), "after": deploy.zip_size(ROOT)} if args.zip else {}
        )

    def median(name: str, group: str, figure: str) -> float:
        return statistics.median(run[group][figure] for run in runs[name])

    print(f"\n| figure | before ({args.rev}) | after (this tree) |")
    print("|---|---|---|")
    rows = [
        (
            "`/track` through `handler.handler`, events/s",
            "single",
            "handler_events_per_s",
            "{:,.0f}",
        ),  # noqa: E501
        ("redis-py PFADD loop, events/s", "single", "pfadd_per_s", "{:,.0f}"),
        ("ratio handler / PFADD loop", "single", "ratio", "{:.2f}"),
        ("cold start `import handler`, ms", "cold", "handler_s", "{:.0f}"),
        ("cold-start ratio to the bare imports", "cold", "ratio", "{:.2f}"),
    ]
    for label, group, figure, fmt in rows:
        scale = 1000 if figure == "handler_s" else 1
        values = [fmt.format(median(name, group, figure) * scale) for name in ("before", "after")]
        print(f"| {label} | {values[0]} | {values[1]} |")
    if sizes:
        print(f"| Lambda zip, MB | {sizes['before'] / 1e6:.2f} | {sizes['after'] / 1e6:.2f} |")


if __name__ == "__main__":
    main()
