"""Files of a given size with random content, their digests, and the EICAR test file."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

# The EICAR anti-virus test file: every engine detects it, and it harms nothing. The offline
# test signatures (ssftp/clamav/test-signatures) match it by its hash and by its marker.
EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
EICAR_MARKER = b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE"


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
