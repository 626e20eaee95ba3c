"""One problem found in ssftp.yaml, with the key path and line that say where.

The loader and the rules find issues and :class:`ssftp.errors.ConfigError` carries them; a
module of its own, so the error hierarchy can name the type without an import loop.
"""

from __future__ import annotations

from dataclasses import dataclass

KeyPath = tuple[str | int, ...]


@dataclass(frozen=True)
class ConfigIssue:
    path: KeyPath
    message: str
    line: int | None = None

    @property
    def dotted(self) -> str:
        text = ""
        for part in self.path:
            text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
        return text or "(top level)"

    def describe(self, source: str) -> str:
        where = f"{source}:{self.line}" if self.line else source
        return f"{where}: {self.dotted}: {self.message}"
