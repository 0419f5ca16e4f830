"""``python -m bench [--cases N]``: runs the benchmarks, writes bench/results/*.json, prints."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench import summary

RESULTS = Path(__file__).with_name("results")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--cases", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    result = asyncio.run(summary.run(args.cases, args.repeat,
                                     os.environ.get("ADUAN_BENCH_DATABASE_URL")))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "summary.json").write_text(json.dumps(result, indent=2) + "\n")
    table = Table(title=f"GET /v1/metrics/summary over {result['cases']:,} cases "
                        f"(median of {result['repeat']})")
    for column in ("period", "summary ms", "reference ms", "ratio"):
        table.add_column(column, justify="left" if column == "period" else "right")
    for row in result["results"]:
        table.add_row(row["period"], f"{row['summary_ms']:.1f}", f"{row['reference_ms']:.1f}",
                      f"{row['ratio']:.3f}")
    console = Console()
    console.print(table)
    console.print(f"reference: {result['reference']}; data loaded in {result['load_seconds']}s")


if __name__ == "__main__":
    main()
