"""`reportflow bench` figures: one measured figure beside its baseline, and how a run
of them is printed (a table, or JSON with the machine it ran on)."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any, TextIO


@dataclass
class Figure:
    key: str
    what: str
    value: str
    baseline: str
    ratio: float | None
    goal: str
    met: bool | None
    detail: dict[str, float] = field(default_factory=dict)


# Figures with this key are the cost table's rows (reportflow_dev/bench_cost.py): printed
# as a table of their own after the ratios, and under "cost" in the JSON.
COST_KEY = "CPU"


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def print_ratios(figures: list[Figure], out: TextIO = sys.stdout) -> None:
    out.write(f"{'':3} {'figure':<58} {'measured':<30} {'baseline':<40} {'ratio':>6}  goal\n")
    for f in figures:
        if f.key == COST_KEY:
            continue
        ratio = f"{f.ratio:.2f}" if f.ratio is not None else ""
        mark = "" if f.met is None else (" ok" if f.met else " MISSED")
        out.write(
            f"{f.key:<3} {f.what:<58} {f.value:<30} {f.baseline:<40} {ratio:>6}  {f.goal}{mark}\n"
        )
    print_cost(figures, out)


def print_cost(figures: list[Figure], out: TextIO = sys.stdout) -> None:
    """The cost table: CPU milliseconds per report by part, share of the total, then
    the note line (the total's baseline)."""
    rows = [f for f in figures if f.key == COST_KEY]
    if not rows:
        return
    out.write(f"\n{'CPU per report, by part':<38} {'ms':>8} {'share':>6}  measured\n")
    for f in rows:
        share = f"{f.ratio * 100:.1f}%" if f.ratio is not None else ""
        how = "" if f.what == "total" else f.baseline
        out.write(f"{f.what:<38} {f.value:>8} {share:>6}  {how}\n")
    out.write(f"note: {rows[-1].baseline}\n")


def cost_report(figures: list[Figure]) -> dict[str, Any]:
    """The cost table for the JSON: its rows, the total and the note line."""
    rows = [f for f in figures if f.key == COST_KEY]
    if not rows:
        return {}
    *parts, total = rows
    return {
        "parts": [
            {
                "part": f.what,
                "cpu_ms_per_report": f.detail["cpu_ms_per_report"],
                "share": f.ratio,
                "measured": f.baseline,
            }
            for f in parts
        ],
        "total_cpu_ms_per_report": total.detail["cpu_ms_per_report"],
        "note": total.baseline,
        "detail": total.detail,
    }


def ratios_report(figures: list[Figure], rows: Sequence[object] = ()) -> str:
    """The whole run as JSON: the machine, the ratios and the parts' rows."""
    return json.dumps(
        {
            "machine": machine(),
            "ratios": [asdict(f) for f in figures if f.key != COST_KEY],
            "cost": cost_report(figures),
            "parts": [asdict(r) for r in rows if is_dataclass(r) and not isinstance(r, type)],
        },
        indent=2,
        default=str,
    )


def machine() -> dict[str, Any]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"cores": os.cpu_count(), "cpu": model, "python": sys.version.split()[0]}
