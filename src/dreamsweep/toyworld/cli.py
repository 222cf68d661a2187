"""Command line of tools/pretrain_toyworld.py: vae -> base (resumable) / oracle -> export,
and base-xl (resumable) -> export-xl for the SDXL-shaped base on the SD base's VAE.

Every step reads and writes under --work (checkpoints, logs, snapshots, contact sheets);
only ``export``, ``export-xl`` and ``base(-xl) --export`` write into the package's assets.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import torch

from dreamsweep.atomic import new_folder
from dreamsweep.toyworld import BASE_DIR, ORACLE_DIR, WORLD_DIR, XL_WORLD_DIR
from dreamsweep.toyworld.models import XL_DESIGNS

# The default work folders, under the user's cache as cache_dir is (conf/train.yaml): outside
# any checkout, so a new checkout resumes the same run.
WORK_NAME, XL_WORK_NAME = "toyworld_work", "toyworld_xl_work"


def default_work(name: str) -> Path:
    """$DREAMSWEEP_CACHE_DIR/<name>, by default ~/.cache/dreamsweep/<name>."""
    cache = os.environ.get("DREAMSWEEP_CACHE_DIR") or "~/.cache/dreamsweep"
    return Path(cache).expanduser() / name


def _log_to(work: Path, name: str):
    def log(message: str) -> None:
        line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}"
        print(line, flush=True)
        with open(work / f"{name}.events.log", "a") as f:
            f.write(line + "\n")

    return log


def cmd_vae(args: argparse.Namespace) -> None:
    from dreamsweep.toyworld.autoencoder import run
    from dreamsweep.toyworld.models import DESIGNS
    from dreamsweep.toyworld.tokenizer import write_tokenizer

    write_tokenizer(args.work / "tokenizer")
    report = run(DESIGNS[args.design], args.work / "vae", args.minutes, seed=args.seed)
    _log_to(args.work, "vae")(f"design {args.design} {asdict(report)}")


def cmd_base(args: argparse.Namespace) -> None:
    def on_export(folder: Path) -> None:
        export(folder, args.work / "oracle", args.assets)

    _pretrain(args, on_export)


def cmd_base_xl(args: argparse.Namespace) -> None:
    """The SDXL-shaped base: its work folder starts with the SD toy world's tokenizer and
    frozen VAE (the same latent space for both families)."""
    adopt_sd_parts(args.work, args.sd_base)
    _pretrain(args, lambda folder: export_base(folder, args.assets / "base"))


def adopt_sd_parts(work: Path, sd_base: Path) -> None:
    """Copy the SD toy base's tokenizer and VAE into a work folder that lacks them."""
    for part in ("tokenizer", "vae"):
        if not (work / part).exists():
            if not (sd_base / part).exists():
                raise FileNotFoundError(f"no {sd_base / part}: pass --sd-base <SD toy base folder>")
            shutil.copytree(sd_base / part, work / part)


def _pretrain(args: argparse.Namespace, on_export) -> None:
    from dreamsweep.toyworld.pretrain import BaseConfig, setup, train

    config = BaseConfig(
        design=args.design, seed=args.seed, lr=args.lr, snapshot_minutes=args.snapshot_minutes
    )
    log = _log_to(args.work, "base")
    warm = None if args.no_warm_start else args.assets / "base"
    trainer = setup(config, args.work, warm_start=warm)

    def on_snapshot(trainer, folder: Path) -> None:
        _sheet(folder, _oracle_dir(args), args.work, log)
        if args.export:
            on_export(folder)

    train(trainer, args.minutes, log=log, on_snapshot=on_snapshot)


def _oracle_dir(args: argparse.Namespace) -> Path:
    """The oracle trained in --work, else the shipped one (a new session has only that)."""
    trained = args.work / "oracle"
    return trained if trained.exists() else ORACLE_DIR


def cmd_oracle(args: argparse.Namespace) -> None:
    from dreamsweep.toyworld.oracle import save_oracle
    from dreamsweep.toyworld.oracle_train import measure, train_oracle

    oracle = train_oracle(seed=args.seed)
    metrics = measure(oracle)
    save_oracle(oracle, args.work / "oracle", metrics)
    _log_to(args.work, "oracle")(f"held-out {metrics}")


def _sheet(folder: Path, oracle_dir: Path, work: Path, log) -> dict:
    """Sample the fixed prompt set, score it with the oracle, save the sheet, log the numbers."""
    from dreamsweep.toyworld.evaluate import contact_sheet, grid
    from dreamsweep.toyworld.oracle import load_oracle
    from dreamsweep.toyworld.pipeline import load

    result = contact_sheet(load(folder), load_oracle(oracle_dir))
    info = folder / "toyworld_info.json"
    meta = json.loads(info.read_text()) if info.exists() else {}
    tag = f"step{meta['step']:07d}" if "step" in meta else folder.name
    grid(result.images).save(work / f"sheet_{tag}.png")
    metrics = {k: v for k, v in asdict(result).items() if k != "images"}
    log(f"sheet {folder} {meta} {metrics} -> {work / f'sheet_{tag}.png'}")
    return metrics


def cmd_sheet(args: argparse.Namespace) -> None:
    folder = args.folder or args.work / "snapshots" / "latest"
    _sheet(folder, args.oracle or _oracle_dir(args), args.work, _log_to(args.work, "sheet"))


def export(base: Path, oracle: Path, assets: Path) -> None:
    """Swap a pipeline folder and the oracle into the assets, each replaced whole."""
    if base.exists():
        export_base(base, assets / "base")
    if oracle.exists():
        with new_folder(assets / "oracle") as tmp:
            shutil.copytree(oracle, tmp, dirs_exist_ok=True)
        print(f"oracle: {oracle} -> {assets / 'oracle'}", flush=True)
    export_subject(assets / "subject")


def export_base(base: Path, target: Path, max_mb: float = 8.0) -> None:
    """Write a pipeline folder (SD or SDXL) with UNet and VAE stored fp16 (about half the
    bytes; they load as fp32) to ``target``, replaced whole; refuse one over ``max_mb``."""
    from dreamsweep.toyworld.pipeline import folder_bytes, load, save_folder

    pipe = load(base)
    pipe.unet.half()
    pipe.vae.half()
    target.parent.mkdir(parents=True, exist_ok=True)
    save_folder(pipe, target)
    shutil.copy(base / "toyworld_info.json", target / "toyworld_info.json")
    size = folder_bytes(target) / 1e6
    print(f"base: {base} -> {target} ({size:.2f} MB)", flush=True)
    if size > max_mb:
        raise ValueError(f"{target} is {size:.2f} MB > {max_mb} MB: choose a smaller design")


def export_subject(folder: Path) -> None:
    """The 5 instance images on white, as PNGs a run can use as data.instance_dir."""
    from dreamsweep.toyworld.world import subject_images

    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(subject_images(5)):
        image.save(folder / f"subject_{i:02d}.png")


def cmd_export(args: argparse.Namespace) -> None:
    export(args.folder or args.work / "snapshots" / "latest", args.work / "oracle", args.assets)


def cmd_export_xl(args: argparse.Namespace) -> None:
    export_base(args.folder or args.work / "snapshots" / "latest", args.assets / "base")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__)
    # --work and --seed go before or after the verb; the default work folder is per verb.
    where = f"default {default_work(WORK_NAME)} ({XL_WORK_NAME} there for the XL verbs)"
    p.add_argument("--work", type=Path, default=None, help=where)
    p.add_argument("--seed", type=int, default=0)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--work", type=Path, default=argparse.SUPPRESS)
    common.add_argument("--seed", type=int, default=argparse.SUPPRESS)
    sub = p.add_subparsers(dest="command", required=True)

    def verb(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, parents=[common])

    vae = verb("vae", "write the tokenizer and train the VAE (minutes)")
    vae.add_argument("--design", default="f2", choices=["f1", "f2"])
    vae.add_argument("--minutes", type=float, default=8.0)
    base = verb("base", "pretrain UNet + text encoder; resumes from --work")
    base.add_argument("--design", default="f2", choices=["f1", "f2"])
    _base_options(base, WORLD_DIR)
    base_xl = verb("base-xl", "pretrain the SDXL-shaped base (two text encoders); resumes")
    base_xl.add_argument("--design", default="xl1", choices=sorted(XL_DESIGNS))
    base_xl.add_argument("--sd-base", type=Path, default=BASE_DIR, help="tokenizer + VAE")
    _base_options(base_xl, XL_WORLD_DIR)
    verb("oracle", "train the oracle and report held-out accuracy")
    sheet = verb("sheet", "oracle-scored contact sheet of a pipeline folder (SD or SDXL)")
    sheet.add_argument("--folder", type=Path, default=None)
    sheet.add_argument("--oracle", type=Path, default=None)
    out = verb("export", "copy a snapshot, the oracle, the subject into assets")
    out.add_argument("--folder", type=Path, default=None, help="default: snapshots/latest")
    out.add_argument("--assets", type=Path, default=WORLD_DIR)
    out_xl = verb("export-xl", "copy an SDXL snapshot into assets/toyworld_xl/base")
    out_xl.add_argument("--folder", type=Path, default=None, help="default: snapshots/latest")
    out_xl.add_argument("--assets", type=Path, default=XL_WORLD_DIR)
    return p


def _base_options(base: argparse.ArgumentParser, assets: Path) -> None:
    base.add_argument("--minutes", type=float, default=60.0, help="wall-time budget")
    base.add_argument("--lr", type=float, default=5e-4)
    base.add_argument("--snapshot-minutes", type=float, default=30.0)
    base.add_argument("--export", action="store_true", help="export each snapshot to assets")
    base.add_argument("--assets", type=Path, default=assets, help="warm-start/export folder")
    base.add_argument("--no-warm-start", action="store_true", help="ignore assets/base")


COMMANDS = {
    "vae": cmd_vae,
    "base": cmd_base,
    "base-xl": cmd_base_xl,
    "oracle": cmd_oracle,
    "sheet": cmd_sheet,
    "export": cmd_export,
    "export-xl": cmd_export_xl,
}
XL_COMMANDS = ("base-xl", "export-xl")


def work_folder(args: argparse.Namespace) -> Path:
    """--work as given, else the verb's family default (the XL run has its own folder)."""
    if args.work is not None:
        return args.work
    return default_work(XL_WORK_NAME if args.command in XL_COMMANDS else WORK_NAME)


def main(argv: list[str] | None = None) -> None:
    torch.set_num_threads(1)  # the machine is shared: one core is someone else's
    args = parser().parse_args(argv)
    args.work = work_folder(args)
    args.work.mkdir(parents=True, exist_ok=True)
    COMMANDS[args.command](args)
