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
        ratio = f"{f.ratio:.2f}" if f.ratio is not None else ""
        mark = "" if f.met is None else (" ok" if f.met else " MISSED")
        out.write(
            f"{f.key:<3} {f.what:<58} {f.value:<30} {f.baseline:<40} {ratio:>6}  {f.goal}{mark}\n"
        )


def ratios_report(figures: list[Figure], rows: Sequence[object] = ()) -> str:
    """The whole run as JSON: the machine, the ratios and the parts' rows."""
    return json.dumps(
        {
            "machine": machine(),
            "ratios": [asdict(f) for f in figures],
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
