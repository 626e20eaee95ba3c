"""Where the checkout is: tests read its files (the source, the example config, the README,
the scripts) from here, whichever folder of tests/ the test module stands in."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
