"""What ``stat`` can tell about a file's identity and content, compared to notice a change.

One definition for every place that asks "is this still the file I saw?": the staging
watcher (has a file stopped changing?), the scanner (did it change while clamd read it?) and
the uploader (is the file in clean/ still the one that was delivered?).
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class FileStamp:
    """Which file (inode), holding what (size, modification time in ns).

    A replaced file has another inode; a rewritten one another size or mtime. The change time
    is left out on purpose: renames and new hard links change it without touching the bytes,
    and the stamp outlives both (it is stored for deliveries). The scanner, which must also
    catch a writer that puts an old mtime back, compares ``st_ctime_ns`` beside it.
    """

    inode: int
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, info: os.stat_result) -> FileStamp:
        return cls(info.st_ino, info.st_size, info.st_mtime_ns)
