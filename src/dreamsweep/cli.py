"""The `dreamsweep` command (console script): `dreamsweep report|export|next <folder>`,
`dreamsweep worker|enqueue <train.py overrides>`."""

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
    export = commands.add_parser(
        "export",
        help="export the weights of a sweep's (or run's) best cell, or of a named cell, with a "
        "model card",
    )
    export.add_argument("folder", type=Path, help="a sweep folder or a run folder")
    export.add_argument(
        "--cell",
        default="best",
        help="best (default), or step_<n>/<cell name> (in a sweep: <run>/step_<n>/<cell name>)",
    )
    export.add_argument(
        "--format", dest="formats", action="append", default=None,
        help="diffusers (default), single-file, lora-kohya, or embedding (textual-inversion runs); "
        "may be given several times",
    )  # fmt: skip
    export.add_argument("--out", type=Path, default=Path("exports"), help="default: exports/")
    export.add_argument("--half", action="store_true", help="fp16 weights (half the size)")
    export.add_argument(
        "--license",
        default=None,
        help="the license of the weights for the card and metadata (default: the base's, e.g. "
        "creativeml-openrail-m for sd15)",
    )
    export.add_argument(
        "--author", default="DreamSweep", help="who trained them (modelspec.author)"
    )
    proposal = commands.add_parser(
        "next",
        help="propose the next sweep from a finished one's evidence: a runnable preset "
        "(sweeps/next-<name>.yaml) whose header says why each change",
    )
    proposal.add_argument("folder", type=Path, help="a sweep folder or a run folder")
    proposal.add_argument(
        "--out", type=Path, default=None,
        help="where to write the preset; - for stdout (default: <conf>/sweep/next-<name>.yaml)",
    )  # fmt: skip
    worker = commands.add_parser(
        "worker",
        help="run trials of a study one at a time until it is done or its queue is empty; "
        "takes train.py -m's preset and overrides (e.g. +sweep=demo_search "
        "hydra.sweeper.storage=...)",
    )
    worker.add_argument(
        "--slots", type=int, default=1,
        help="worker processes on this machine, each on GPUs of its own (or one CPU thread)",
    )  # fmt: skip
    worker.add_argument("overrides", nargs=argparse.REMAINDER, help="as for train.py -m")
    enqueue = commands.add_parser(
        "enqueue",
        help="put a grid preset's training runs (after folding) into a study's queue for "
        "dreamsweep worker to run",
    )
    enqueue.add_argument("overrides", nargs=argparse.REMAINDER, help="as for train.py -m")
    return parser


def _pool(args) -> int:
    from dreamsweep.sweeps import slots

    try:
        if args.command == "enqueue":
            return slots.enqueue(args.overrides)
        if args.slots < 1:
            raise ValueError(f"--slots {args.slots}: give 1 or more")
        return slots.start_workers(args.overrides, args.slots)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def _next(args) -> int:
    from dreamsweep.report.next_sweep import next_sweep

    try:
        text, written, _ = next_sweep(args.folder, args.out)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(text, end="")
    if written is not None:
        print(f"next sweep: {written}\n  python train.py -m +sweep={written.stem}")
    return 0


def _unwritable(err: Exception, destination: Path, what: str) -> int:
    """A full or read-only destination is one `error:` line (exit 1); anything else raises."""
    from dreamsweep.runs import storage_error

    message = storage_error(err, destination.expanduser().resolve(), f"{what} is written anew")
    if message is None:
        raise err
    print(f"error: {message}", file=sys.stderr)
    return 1


def _export(args) -> int:
    from dreamsweep.export.choose import ExportError
    from dreamsweep.export.command import export

    try:
        out, sizes = export(args.folder, args.cell, tuple(args.formats or ["diffusers"]),
                            args.out, args.half, args.license, args.author)  # fmt: skip
    except ExportError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except Exception as err:
        return _unwritable(err, args.out, "the export")
    for name, size in sorted(sizes.items()):
        if name.endswith((".safetensors", ".png", ".md")):
            print(f"{size / 2**20:9.2f} MB  {name}")
    print(f"export: {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from dreamsweep.console import quiet_library_noise

    quiet_library_noise()
    if args.command == "export":
        return _export(args)
    if args.command == "next":
        return _next(args)
    if args.command in ("worker", "enqueue"):
        return _pool(args)
    from dreamsweep.report.export import export_report

    started = time.perf_counter()
    try:
        out = export_report(args.folder, args.out, args.reports_dir, wandb=args.wandb)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except Exception as err:
        return _unwritable(err, args.out or args.reports_dir, "the report")
    print(f"report: {out / 'index.html'} ({time.perf_counter() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
