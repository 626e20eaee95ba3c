"""``--compare REF``: the same table run for another checkout, and this run's figures beside it.

A change's effect on speed shows best as the same benchmark on both sides of it, on the same
machine, one after the other. REF is a path to a checkout or a git ref of this repository
(checked out in a temporary ``git worktree``, removed afterwards); its ``python -m bench`` runs
with this Python and the same arguments, minus ``--compare`` and ``--json``, and its JSON is
read back. The two runs are minutes apart, so a busy moment of the machine falls on one only:
each run's own rows stay A B alternated, but the comparison across runs is noisier than they are.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.results import Better, format_number, render_columns

REPO = Path(__file__).resolve().parents[1]
# Options whose value belongs to this run only.
_OWN_OPTIONS = ("--compare", "--json")


@dataclass(frozen=True)
class Figure:
    """One row's median, as the JSON of a run has it."""

    name: str
    better: Better
    unit: str
    median: float | None

    @classmethod
    def from_json(cls, row: dict[str, object]) -> Figure:
        median = row.get("median")
        return cls(str(row["name"]), Better(str(row["better"])), str(row["unit"]),
                   float(median) if isinstance(median, int | float) else None)


@dataclass(frozen=True)
class Compared:
    """A row both runs have: this checkout's median against REF's."""

    this: Figure
    ref: Figure

    @property
    def ratio(self) -> float | None:
        """How many times better this checkout is than REF (> 1 is better, either way)."""
        this, ref = self.this.median, self.ref.median
        if this is None or ref is None:
            return None
        if self.this.better is Better.HIGHER:
            return this / ref if ref else None
        return ref / this if this else None

    def as_json(self) -> dict[str, object]:
        return {"name": self.this.name, "better": str(self.this.better),
                "unit": self.this.unit, "this": self.this.median, "ref_unit": self.ref.unit,
                "ref": self.ref.median, "ratio": self.ratio}


def compare(this: list[dict[str, object]], ref: list[dict[str, object]]) -> list[Compared]:
    """The rows present in both runs (by name), in this run's order."""
    theirs = {figure.name: figure for figure in map(Figure.from_json, ref)}
    return [Compared(figure, theirs[figure.name]) for figure in map(Figure.from_json, this)
            if figure.name in theirs]


def _median(figure: Figure) -> str:
    return "-" if figure.median is None else f"{format_number(figure.median)} {figure.unit}"


def render_comparison(compared: list[Compared], ref_label: str) -> str:
    """A plain-text table: this checkout's median, REF's, and the ratio (this one's
    advantage)."""
    header = ("workload", "this checkout median", f"{ref_label} median", "ratio")
    lines: list[tuple[str, ...]] = [header]
    for row in compared:
        ratio = "-" if row.ratio is None else f"{row.ratio:.2f}x"
        lines.append((row.this.name, _median(row.this), _median(row.ref), ratio))
    return render_columns(lines)


def comparison_json(ref_label: str, ref_document: dict[str, object],
                    compared: list[Compared]) -> dict[str, object]:
    """What the JSON's ``compare`` holds: which REF, its run's context, the compared rows."""
    return {"ref": ref_label, "ref_context": ref_document.get("context"),
            "rows": [row.as_json() for row in compared]}


def arguments_for_ref(argv: list[str]) -> list[str]:
    """``argv`` without the options that are this run's own (``--compare``, ``--json``), in
    either form (``--json x`` or ``--json=x``); the parser takes no abbreviations of them."""
    kept: list[str] = []
    skip_value = False
    for argument in argv:
        if skip_value:
            skip_value = False
        elif argument in _OWN_OPTIONS:
            skip_value = True
        elif not argument.startswith(tuple(option + "=" for option in _OWN_OPTIONS)):
            kept.append(argument)
    return kept


def _git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL)


@contextlib.contextmanager
def checkout(ref: str, scratch: Path) -> Iterator[Path]:
    """The checkout REF names: a directory as it is, or a git ref as a temporary detached
    worktree in ``scratch``, removed when the block ends."""
    if Path(ref).is_dir():
        yield Path(ref).resolve()
        return
    if _git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}").returncode != 0:
        raise RuntimeError(f"--compare {ref}: neither a directory nor a commit of {REPO}")
    tree = scratch / "checkout"
    added = _git("worktree", "add", "--detach", "--quiet", str(tree), ref)
    if added.returncode != 0:
        raise RuntimeError(f"git worktree add of {ref} failed: {added.stderr.strip()}")
    try:
        yield tree
    finally:
        _git("worktree", "remove", "--force", str(tree))


def run_ref(ref: str, argv: list[str]) -> dict[str, object]:
    """REF's ``python -m bench`` with ``argv`` (its progress on our stderr, its table
    dropped: the comparison shows its figures); the JSON it wrote."""
    scratch = Path(tempfile.mkdtemp(prefix="ssftp-bench-ref-"))
    try:
        with checkout(ref, scratch) as tree:
            results = scratch / "ref-results.json"
            env = {**os.environ, "PYTHONPATH": str(tree)}
            ran = subprocess.run(
                [sys.executable, "-m", "bench", *arguments_for_ref(argv), "--json",
                 str(results)],
                cwd=tree, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
            if ran.returncode != 0:
                raise RuntimeError(f"the benchmark of {ref} failed (exit {ran.returncode})")
            document: dict[str, object] = json.loads(results.read_text())
            return document
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
