"""Files of a given size with random content, and their digests."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def make_random_file(path: Path, size: int) -> Path:
    chunk = 1 << 20
    with path.open("wb") as handle:
        remaining = size
        while remaining:
            n = min(chunk, remaining)
            handle.write(os.urandom(n))
            remaining -= n
    return path
