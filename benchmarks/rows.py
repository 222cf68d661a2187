"""A benchmark row (one comparison, ours / baseline) and the Markdown table of rows."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Target:
    """What the issue asks of a ratio: ours / baseline `op` value."""

    op: str  # "<=" | ">" | "=="
    value: float

    def met(self, ratio: float) -> bool:
        if self.op == "<=":
            return ratio <= self.value
        if self.op == ">":
            return ratio > self.value
        return abs(ratio - self.value) < 1e-12

    def __str__(self) -> str:
        return f"{self.op} {self.value:.2f}"


@dataclass
class Row:
    name: str
    unit: str
    ours: float | None
    baseline: float | None
    target: Target | None = None
    ours_peak_mb: float | None = None
    baseline_peak_mb: float | None = None
    detail: str = ""
    ratio: float | None = field(init=False)
    met: bool | None = field(init=False)

    def __post_init__(self) -> None:
        ok = self.ours is not None and self.baseline not in (None, 0)
        self.ratio = self.ours / self.baseline if ok else None
        self.met = self.target.met(self.ratio) if self.target and self.ratio is not None else None

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "target": str(self.target) if self.target else None}


def _num(value: float | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"


def _met(met: bool | None) -> str:
    return "—" if met is None else ("yes" if met else "**no**")


def markdown(rows: list[Row], meta: dict[str, Any]) -> str:
    m = meta["machine"]
    load = meta["load_1min"]
    lines = [
        f"# DreamSweep benchmarks, {meta['date']} ({'quick' if meta['quick'] else 'full'})",
        "",
        f"{m['device']} ({m['precision']}), {m['resolution']} px; {m['cpus']} CPUs, "
        f"OMP_NUM_THREADS={m['omp_num_threads']}; torch {m['torch']}, diffusers "
        f"{m['diffusers']}. Benchmark wall time {meta['wall_seconds']:.0f} s; 1-min load average "
        f"during it {load['min']:.2f} / {load['median']:.2f} / {load['max']:.2f} "
        "(min / median / max). Ratio = ours / baseline.",
        "",
        "| name | unit | ours | baseline | ratio | target | met | peak MiB ours / baseline "
        "| detail |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        memory = f"{_num(r.ours_peak_mb)} / {_num(r.baseline_peak_mb)}"
        lines.append(
            f"| {r.name} | {r.unit} | {_num(r.ours)} | {_num(r.baseline)} | "
            f"{'—' if r.ratio is None else f'{r.ratio:.2f}'} | {r.target or '—'} | "
            f"{_met(r.met)} | {memory} | {r.detail} |"
        )
    return "\n".join(lines) + "\n"


def progress_line(row: Row) -> str:
    ratio = "—" if row.ratio is None else f"{row.ratio:.2f}"
    return f"  {row.name}: ours {_num(row.ours)} vs {_num(row.baseline)} {row.unit} -> {ratio}"
