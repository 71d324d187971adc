"""Results: named figures, targets with PASS/MISS verdicts, a plain-text table and a JSON dict."""

from __future__ import annotations

import math
import operator
from dataclasses import asdict, dataclass, field
from typing import Any

_OPS = {"<=": operator.le, ">=": operator.ge}


@dataclass
class Target:
    """One checked number: ``value op limit`` (e.g. ratio <= 2.5)."""

    part: str
    name: str
    value: float
    op: str
    limit: float
    unit: str = ""
    note: str = ""

    @property
    def passed(self) -> bool:
        return not math.isnan(self.value) and _OPS[self.op](self.value, self.limit)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["passed"] = self.passed
        return d


@dataclass
class Section:
    """One part's output: a titled table of rows plus the targets it checks."""

    key: str
    title: str
    columns: list[str]
    rows: list[list[Any]] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)  # raw figures for the JSON file
    notes: list[str] = field(default_factory=list)

    def target(self, name: str, value: float, op: str, limit: float, unit: str = "", note: str = "") -> Target:
        t = Target(self.key, name, float(value), op, float(limit), unit, note)
        self.targets.append(t)
        return t

    def as_dict(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "columns": self.columns,
            "rows": self.rows,
            "data": self.data,
            "notes": self.notes,
            "targets": [t.as_dict() for t in self.targets],
        }


def fmt(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        a = abs(value)
        if a == 0:
            return "0"
        if a >= 1000:
            return f"{value:,.0f}"
        if a >= 100:
            return f"{value:.1f}"
        if a >= 1:
            return f"{value:.2f}"
        if a >= 0.001:
            return f"{value:.4f}"
        return f"{value:.2e}"
    return "-" if value is None else str(value)


def render_rows(columns: list[str], rows: list[list[Any]]) -> str:
    cells = [columns] + [[fmt(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    lines = []
    for n, r in enumerate(cells):
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def render_section(s: Section) -> str:
    out = [f"== {s.title} =="]
    if s.rows:
        out.append(render_rows(s.columns, s.rows))
    for note in s.notes:
        out.append(f"  note: {note}")
    if s.targets:
        out.append("")
        out.append(render_targets(s.targets))
    return "\n".join(out)


def render_targets(targets: list[Target]) -> str:
    rows = [
        ["PASS" if t.passed else "MISS", t.name, f"{fmt(t.value)}{t.unit}", f"{t.op} {fmt(t.limit)}{t.unit}", t.note]
        for t in targets
    ]
    return render_rows(["verdict", "target", "measured", "limit", "note"], rows)
