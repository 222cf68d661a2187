"""DreamSweep vs plain baselines, measured in one run: ratios, not absolute timings.

    OMP_NUM_THREADS=1 python benchmarks/run.py --quick     # under 10 minutes on 2 CPU cores
    python benchmarks/run.py --device cuda --precision bf16  # on a GPU: 512 px, mixed precision
    OMP_NUM_THREADS=1 python benchmarks/run.py --quick --only step_xl eval_xl  # SDXL-shaped, CPU
    python benchmarks/run.py --device cuda --model sdxl --model-path DIR  # a real SDXL, 1024 px

Writes benchmarks/results/<date>.json and <date>.md: one row per comparison, each
{name, ours, baseline, ratio, target, met} plus both sides' peak memory. Both sides of a row
are measured in this run, interleaved (A, B, B, A, ...) where the machine load could drift,
and summarised by medians, so the ratios compare across machines and load. What each row
measures is in its section's docstring below and in the row's `detail`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
import time
from pathlib import Path

from processes import HERE, SIDE, Context, LoadSampler, device_args, machine, must_finish
from rows import Row, markdown, progress_line
from sections import SECTIONS
from sections_xl import XL_SECTIONS


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer repeats, smaller sweeps")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:n]")
    p.add_argument(
        "--precision", choices=["no", "fp16", "bf16"], help="default: no on CPU, bf16 on a GPU"
    )
    p.add_argument("--resolution", type=int, help="default: 64 on CPU, 512 on a GPU (SDXL 1024)")
    p.add_argument("--only", nargs="+", choices=list(SECTIONS), help="run only these sections")
    p.add_argument(
        "--model",
        choices=["toy", "sdxl"],
        default="toy",
        help=f"the SDXL sections' model ({', '.join(XL_SECTIONS)}): toy = tiny_xl and the toy "
        "world XL; sdxl = a real SDXL from --model-path (a GPU; runs only the SDXL sections)",
    )
    p.add_argument("--model-path", type=Path, help="--model sdxl: a local SDXL diffusers folder")
    p.add_argument("--out", type=Path, default=HERE / "results")
    args = p.parse_args(argv)
    gpu = args.device.startswith("cuda")
    if args.model == "sdxl":
        check_sdxl(p, args, gpu)
    args.precision = args.precision or ("bf16" if gpu else "no")
    args.resolution = args.resolution or (1024 if args.model == "sdxl" else 512 if gpu else 64)
    return args


def check_sdxl(p: argparse.ArgumentParser, args: argparse.Namespace, gpu: bool) -> None:
    """--model sdxl needs a GPU and a local SDXL folder, and applies to the SDXL sections."""
    if not gpu:
        p.error("--model sdxl needs --device cuda: a real SDXL at 1024 px is not measured on a CPU")
    if args.model_path is None:
        p.error("--model sdxl needs --model-path: a local SDXL diffusers folder (model_index.json)")
    if not (args.model_path / "model_index.json").is_file():
        p.error(f"--model-path {args.model_path} is not a diffusers folder (no model_index.json)")
    args.model_path = args.model_path.resolve()
    others = sorted(set(args.only or []) - set(XL_SECTIONS))
    if others:
        p.error(f"--model sdxl applies to {', '.join(XL_SECTIONS)} only, not {', '.join(others)}")
    args.only = args.only or list(XL_SECTIONS)


def prepare(args: argparse.Namespace, tmp: Path) -> Context:
    """The scratch folder's logs and the tiny model saved for the plain baselines."""
    ctx = Context(args, tmp, tmp / "tiny-model", tmp / "logs")
    ctx.logs.mkdir()
    save = [sys.executable, str(SIDE), "save-tiny", f"--model-dir={ctx.tiny_model}"]
    with ctx.log_file("save-tiny") as log:
        must_finish([*save, *device_args(args)], ctx.env(), log)
    return ctx


def main() -> None:
    args = parse()
    started, date = time.perf_counter(), dt.date.today().isoformat()
    rows: list[Row] = []
    load = LoadSampler()
    with tempfile.TemporaryDirectory(prefix="dreamsweep-bench-") as tmp, load.running():
        ctx = prepare(args, Path(tmp))
        for name, section in SECTIONS.items():
            if args.only and name not in args.only:
                continue
            print(f"{name} ...", flush=True)
            section_started = time.perf_counter()
            produced = section(ctx)
            for row in [produced] if isinstance(produced, Row) else produced:
                rows.append(row)
                if name not in ("step", "step_xl"):  # step rows print as they come
                    print(progress_line(row), flush=True)
            print(f"{name}: {time.perf_counter() - section_started:.0f} s", flush=True)
    meta = {
        "date": date,
        "quick": args.quick,
        "wall_seconds": time.perf_counter() - started,
        "load_1min": load.summary(),
        "machine": machine(args),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    report = {**meta, "rows": [r.as_json() for r in rows]}
    (args.out / f"{date}.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / f"{date}.md").write_text(markdown(rows, meta))
    print(markdown(rows, meta))
    print(f"wrote {args.out / f'{date}.json'} and .md")


if __name__ == "__main__":
    main()
