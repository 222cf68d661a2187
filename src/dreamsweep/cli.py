"""The `dreamsweep` command (console script): `dreamsweep report <sweep or run folder>`."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dreamsweep", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    report = commands.add_parser(
        "report",
        help="export a sweep's (or a run's) report: index.html, report.md, figures, best.json",
    )
    report.add_argument(
        "folder", type=Path, help="a sweep folder (outputs/sweeps/<name>/<date>) or a run folder"
    )
    report.add_argument(
        "--out",
        type=Path,
        default=None,
        help="the report folder (default: <reports-dir>/<sweep name>-<date>)",
    )
    report.add_argument("--reports-dir", type=Path, default=Path("reports"))
    report.add_argument(
        "--wandb",
        action="store_true",
        help="also log the report to a W&B run (job_type=report; offline unless WANDB_MODE=online)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from dreamsweep.report.export import export_report

    started = time.perf_counter()
    try:
        out = export_report(args.folder, args.out, args.reports_dir, wandb=args.wandb)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"report: {out / 'index.html'} ({time.perf_counter() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
