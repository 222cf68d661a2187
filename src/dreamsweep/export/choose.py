"""Which cell to export: the sweep's (or run's) best, or one named on the command line.

The best is the report's best (report/best.py), so `dreamsweep export` hands over exactly the
winner the report names, with its scores, their intervals and the reproducing command.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dreamsweep.report.best import BestCard, best_card, reproduce_command
from dreamsweep.report.collect import CellRow, Run, collect
from dreamsweep.runs import cell_key, parse_cell_key


class ExportError(ValueError):
    """What to export cannot be found; the message says what there is instead."""


@dataclass
class Chosen:
    run: Run
    row: CellRow
    command: str

    @property
    def objective_interval(self) -> tuple[float, float] | None:
        """The 95% bootstrap interval of the cell's objective (verdicts.py)."""
        return self.row.intervals.get("objective")

    @property
    def title(self) -> str:
        return f"{self.run.path.parent.name}-{self.run.name}-step{self.row.step}-{self.row.cell}"


def choose(folder: Path, cell: str = "best") -> Chosen:
    """``cell``: "best", or "<step_NNNNNN>/<cell name>" (in a sweep, "<run>/<step>/<cell>")."""
    if not folder.is_dir():
        raise ExportError(f"{folder} is not a folder; give a sweep or run folder")
    sweep = collect(folder)
    if cell == "best":
        card: BestCard | None = best_card(sweep)
        if card is None:
            raise ExportError(f"{folder} has no scored cell yet (no trained step evaluated)")
        return Chosen(card.run, card.row, card.command)
    parts = cell.strip("/").split("/")
    run_name = parts[0] if len(parts) == 3 else (sweep.runs[0].name if sweep.runs else "")
    wanted = parse_cell_key("/".join(parts[-2:]))
    rows = [r for r in sweep.cells if r.run == run_name and (r.step, r.cell) == wanted]
    if not rows or rows[0].step == 0:
        known = sorted({cell_key(r.step, r.cell) for r in sweep.cells if r.step > 0})
        raise ExportError(f"no trained cell '{cell}' in {folder}; known: {', '.join(known[:12])}")
    row = rows[0]
    run = sweep.run(row.run)
    return Chosen(run, row, reproduce_command(row, run))
