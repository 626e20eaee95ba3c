"""Read ssftp.yaml into a validated :class:`SsftpConfig`, or explain exactly what is wrong.

Every error names the file, the line and the key path (``users.stagingDir[1].auth.username``),
and never echoes a value, since the value may be a password. ``${NAME}`` is replaced by the
environment variable NAME (``$${`` writes a literal ``${``) so secrets can stay out of the file.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from ssftp.config.issues import ConfigIssue, KeyPath
from ssftp.config.rules import find_errors, find_warnings
from ssftp.config.schema import SsftpConfig
from ssftp.errors import ConfigError

_ENV_REF = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$\{([^}]*)\}?")


@dataclass(frozen=True)
class LoadedConfig:
    config: SsftpConfig
    source: str
    warnings: list[ConfigIssue]
    digest: str


class _LineMap:
    """Line numbers of every key and item in the YAML document, by key path."""

    def __init__(self) -> None:
        self.lines: dict[KeyPath, int] = {}
        self.duplicates: list[ConfigIssue] = []

    def walk(self, node: yaml.Node, path: KeyPath) -> None:
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key_node, value_node in node.value:
                key = str(key_node.value)
                line = key_node.start_mark.line + 1
                if key in seen:
                    self.duplicates.append(ConfigIssue((*path, key), "key appears twice", line))
                seen.add(key)
                self.lines[(*path, key)] = line
                self.walk(value_node, (*path, key))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self.walk(item, (*path, index))

    def line_of(self, path: KeyPath) -> int | None:
        for end in range(len(path), -1, -1):
            if path[:end] in self.lines:
                return self.lines[path[:end]]
        return None

    def known_prefix(self, path: KeyPath) -> KeyPath:
        for end in range(len(path), -1, -1):
            if path[:end] in self.lines:
                return path[:end]
        return ()


def _interpolate(value: Any, path: KeyPath, issues: list[ConfigIssue]) -> Any:
    if isinstance(value, dict):
        return {key: _interpolate(item, (*path, key), issues) for key, item in value.items()}
    if isinstance(value, list):
        return [_interpolate(item, (*path, index), issues) for index, item in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$${":
            return "${"
        name = match.group(1)
        if name is None:
            issues.append(ConfigIssue(path, "malformed ${...} reference (expected ${NAME})"))
            return ""
        if name not in os.environ:
            issues.append(ConfigIssue(path, f"environment variable {name} is not set"))
            return ""
        return os.environ[name]

    return _ENV_REF.sub(substitute, value)


def _pydantic_issues(error: ValidationError, lines: _LineMap) -> list[ConfigIssue]:
    issues = []
    for detail in error.errors(include_input=False, include_url=False):
        loc: KeyPath = tuple(detail["loc"])
        path = lines.known_prefix(loc)
        message = detail["msg"].removeprefix("Value error, ")
        if detail["type"] == "missing" and len(loc) > len(path):
            path = (*path, loc[len(path)])
        elif detail["type"] == "extra_forbidden":
            path = loc
            message = "unknown key (check the spelling; keys are camelCase as in sSFTP)"
        issues.append(ConfigIssue(path, message, lines.line_of(loc)))
    return issues


def parse_config(text: str, source: str = "<config>") -> LoadedConfig:
    """Validate config text; raises :class:`ConfigError` listing every problem."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(source, [ConfigIssue((), f"not valid YAML: {problem}", line)]) from None

    lines = _LineMap()
    if node is not None:
        lines.walk(node, ())
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(source, [ConfigIssue((), "the file must be a mapping of keys", 1)])
    if lines.duplicates:
        raise ConfigError(source, lines.duplicates)

    env_issues: list[ConfigIssue] = []
    data = _interpolate(data, (), env_issues)
    if env_issues:
        raise ConfigError(source, [ConfigIssue(i.path, i.message, lines.line_of(i.path))
                                   for i in env_issues])
    try:
        config = SsftpConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, _pydantic_issues(exc, lines)) from None

    errors = find_errors(config)
    if errors:
        raise ConfigError(source, [ConfigIssue(e.path, e.message, lines.line_of(e.path))
                                   for e in errors])
    warnings = [ConfigIssue(w.path, w.message, lines.line_of(w.path))
                for w in find_warnings(config)]
    digest = hashlib.sha256(text.encode()).hexdigest()
    return LoadedConfig(config, source, warnings, digest)


def load_config(path: str | os.PathLike[str]) -> LoadedConfig:
    """Read and validate a config file; raises :class:`ConfigError`."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(source, [ConfigIssue((), "file not found")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(source, [ConfigIssue((), f"cannot read: {exc}")]) from None
    return parse_config(text, source)
