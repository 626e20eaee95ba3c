"""Figures, their references and targets, and how they are printed and saved.

A benchmark row compares one figure of ssftp with the same figure of a reference measured in the
same run (OpenSSH's sshd, or raw clamd), so the ratio means something on any machine. Each
figure keeps every sample: the median is what is compared, the spread (min-max) shows how far
one run can be trusted.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path


class Better(StrEnum):
    """Which way a figure improves: throughput goes up, time and memory go down."""

    HIGHER = "higher"
    LOWER = "lower"


@dataclass
class Samples:
    """Repeated measurements of one figure, in ``unit``."""

    unit: str
    values: list[float] = field(default_factory=list)

    def add(self, value: float) -> None:
        self.values.append(value)

    @property
    def median(self) -> float:
        if not self.values:
            raise ValueError("no samples were taken")
        return statistics.median(self.values)

    @property
    def spread(self) -> tuple[float, float]:
        return min(self.values), max(self.values)

    def describe(self) -> str:
        low, high = self.spread
        return (f"{format_number(self.median)} {self.unit} "
                f"({format_number(low)}-{format_number(high)})")


@dataclass(frozen=True)
class Target:
    """What a row must reach. ``check`` gets (figure, reference) medians; ``text`` says it."""

    text: str
    check: Callable[[float, float | None], bool]

    @classmethod
    def ratio_at_least(cls, factor: float, better: Better = Better.HIGHER) -> Target:
        """The row's ratio (ssftp's advantage, whichever way the figure improves) is at least
        ``factor``: for a figure that should be low, ssftp's times ``factor`` is at most the
        reference's."""
        if better is Better.HIGHER:
            return cls(f">= {factor:g}x", lambda figure, reference: (
                reference is not None and figure >= factor * reference))
        return cls(f">= {factor:g}x", lambda figure, reference: (
            reference is not None and figure * factor <= reference))

    @classmethod
    def at_least(cls, limit: float, unit: str) -> Target:
        return cls(f">= {limit:g} {unit}", lambda figure, _reference: figure >= limit)

    @classmethod
    def at_most(cls, limit: float, unit: str) -> Target:
        return cls(f"<= {limit:g} {unit}", lambda figure, _reference: figure <= limit)

    @classmethod
    def at_most_reference_times(cls, factor: float, plus: float, unit: str) -> Target:
        return cls(f"<= {factor:g}x ref + {plus:g} {unit}", lambda figure, reference: (
            reference is not None and figure <= factor * reference + plus))


@dataclass
class Row:
    """One line of the table: ssftp's figure against its reference."""

    name: str
    better: Better
    figure: Samples
    reference_name: str | None = None
    reference: Samples | None = None
    target: Target | None = None
    note: str = ""
    # Cores each part of the machine kept busy meanwhile (median over the rounds;
    # bench.cpu.CpuSplit), and what that says held the figure back.
    cpu: dict[str, float] = field(default_factory=dict)
    bound: str = ""

    @property
    def ratio(self) -> float | None:
        """How many times better ssftp is than the reference (> 1 is better, either way)."""
        if self.reference is None or not self.reference.values or not self.figure.values:
            return None
        figure, reference = self.figure.median, self.reference.median
        if self.better is Better.HIGHER:
            return figure / reference if reference else None
        return reference / figure if figure else None

    @property
    def met(self) -> bool | None:
        if self.target is None or not self.figure.values:
            return None
        reference = self.reference.median if self.reference and self.reference.values else None
        return self.target.check(self.figure.median, reference)

    def as_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "better": str(self.better),
            "unit": self.figure.unit,
            "median": self.figure.median if self.figure.values else None,
            "samples": self.figure.values,
            "reference": None if self.reference is None else {
                "name": self.reference_name,
                "unit": self.reference.unit,
                "median": self.reference.median if self.reference.values else None,
                "samples": self.reference.values,
            },
            "ratio": self.ratio,
            "target": None if self.target is None else self.target.text,
            "met": self.met,
            "note": self.note,
            "cpu": self.cpu or None,
            "bound": self.bound or None,
        }


def format_number(value: float) -> str:
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def render_table(rows: list[Row]) -> str:
    """A plain-text table: figure, reference, ratio (ssftp's advantage), target and verdict."""
    header = ("workload", "ssftp median (min-max)", "reference median (min-max)", "ratio",
              "target", "met")
    lines: list[tuple[str, ...]] = [header]
    for row in rows:
        reference = "-" if row.reference is None else \
            f"{row.reference_name}: {row.reference.describe()}"
        ratio = "-" if row.ratio is None else f"{row.ratio:.2f}x"
        met = {None: "-", True: "yes", False: "NO"}[row.met]
        lines.append((row.name, row.figure.describe(), reference, ratio,
                      row.target.text if row.target else "-", met))
    return render_columns(lines)


def render_cpu_table(rows: list[Row]) -> str | None:
    """For the rows that say where the CPU went: each part's cores, busiest first, and the
    bound; None when no row does."""
    lines: list[tuple[str, ...]] = [
        ("workload", "cores busy meanwhile (median of the rounds)", "bound")]
    for row in rows:
        if row.cpu:
            busiest = sorted(row.cpu.items(), key=lambda item: -item[1])
            lines.append((row.name, ", ".join(f"{name} {cores:.2f}" for name, cores in busiest
                                              if cores >= 0.005), row.bound))
    return render_columns(lines) if len(lines) > 1 else None


def render_columns(lines: list[tuple[str, ...]]) -> str:
    """``lines`` (the first is the header) as left-aligned columns, a rule under the header."""
    widths = [max(len(line[column]) for line in lines) for column in range(len(lines[0]))]
    rendered = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True))
                .rstrip() for line in lines]
    rendered.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(rendered)


def write_json(path: Path, rows: list[Row], context: dict[str, object],
               compare: dict[str, object] | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {"context": context, "rows": [row.as_json() for row in rows]}
    if compare is not None:
        document["compare"] = compare
    path.write_text(json.dumps(document, indent=2) + "\n")
