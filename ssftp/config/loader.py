"""Read ssftp.yaml into a validated :class:`SsftpConfig`, or explain exactly what is wrong.

Every error names the file, the line and the key path (``users.stagingDir[1].auth.username``),
and never echoes a value, since the value may be a password. ``${NAME}`` is replaced by the
environment variable NAME (``$${`` writes a literal ``${``) so secrets can stay out of the file.

The file may be hostile, or just broken on a bad day, and both ``check-config`` and hot reload
read it: every limit below turns what would be a hang, a runaway allocation or a traceback into
one line that names the file. Only a regular file (or a symlink to one) of at most
:data:`MAX_CONFIG_BYTES` is read, and the YAML is composed with a bound on nesting and on alias
expansion before anything is expanded.
"""

from __future__ import annotations

import gc
import hashlib
import os
import re
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

import yaml
from pydantic import ValidationError
from yaml.composer import Composer

from ssftp.config.rules import find_errors, find_warnings
from ssftp.config.schema import SsftpConfig
from ssftp.errors import ConfigError, ConfigIssue, KeyPath

_ENV_REF = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$\{([^}]*)\}?")

_MIB = 1024 * 1024
# An ssftp.yaml with 10 000 accounts is 1 to 2 MiB; a file is read whole, so bound it.
MAX_CONFIG_BYTES = 4 * _MIB
# ssftp.yaml nests 6 levels deep; the rest is headroom for odd but harmless layouts.
MAX_NESTING = 64
# What aliases may add to the document, in characters and nodes written out: as much as a whole
# config file could hold. The load then costs at most what two files of the limit would.
MAX_ALIAS_EXPANSION = MAX_CONFIG_BYTES

_NOT_REGULAR = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
                (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                (stat.S_ISSOCK, "a socket"))


@dataclass(frozen=True)
class LoadedConfig:
    config: SsftpConfig
    source: str
    warnings: list[ConfigIssue]
    digest: str


class _LimitExceeded(yaml.YAMLError):
    """Valid YAML that ssftp will not compose, with the line of the node that crossed a limit."""

    def __init__(self, problem: str, event: yaml.Event) -> None:
        super().__init__(problem)
        self.problem = problem
        self.line = event.start_mark.line + 1 if event.start_mark is not None else None


class _BoundedLoader(Composer, yaml.CSafeLoader):
    """libyaml's parser and PyYAML's safe constructor, with PyYAML's composer between them so
    that nesting and aliases are counted while the node graph is built.

    Nesting costs recursion here and in every walk after, so it is bounded. Aliases are not
    refused (sSFTP files have none, but an anchor for settings shared by several downloaders is
    fair use); what they would add once written out is: a node graph of a 1 KiB "billion
    laughs" is small, its expansion by the line map, the interpolation and the schema is not.
    A count of aliases alone would not do, since a few aliases nested in each other multiply,
    and nor would refusing aliases to collections, since many aliases to one long scalar add up
    too. So each node's written-out size (1, plus a scalar's length, plus its children's sizes,
    an alias counting as its anchor's size) is known the moment it is composed.
    """

    def __init__(self, text: str) -> None:
        yaml.CSafeLoader.__init__(self, text)
        Composer.__init__(self)
        self._depth = 0
        self._written = 0  # written-out size of everything composed so far
        self._aliased = 0  # the part of it that aliases added
        self._anchored: dict[str, int] = {}  # written-out size of each anchor's node

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        # The composer asks for a node only where the parser has one.
        event = cast(yaml.NodeEvent, self.peek_event())
        if isinstance(event, yaml.AliasEvent):
            self._expand(event)
            return super().compose_node(parent, index)
        nests = isinstance(event, yaml.CollectionStartEvent)
        if nests:
            self._depth += 1
            if self._depth > MAX_NESTING:
                raise _LimitExceeded(f"nested deeper than {MAX_NESTING} levels", event)
        start = self._written
        node = super().compose_node(parent, index)
        self._depth -= nests
        self._written += 1 + (len(node.value) if isinstance(node, yaml.ScalarNode) else 0)
        if event.anchor is not None:
            self._anchored[event.anchor] = self._written - start
        return node

    def _expand(self, alias: yaml.NodeEvent) -> None:
        if alias.anchor in self.anchors and alias.anchor not in self._anchored:
            raise _LimitExceeded("an alias refers to a collection that contains it "
                                 "(a structure without end)", alias)
        # An undefined alias counts nothing here: the composer refuses it next.
        size = self._anchored.get(str(alias.anchor), 0)
        self._written += size
        self._aliased += size
        if self._aliased > MAX_ALIAS_EXPANSION:
            raise _LimitExceeded(
                f"YAML aliases would expand the document by more than "
                f"{MAX_ALIAS_EXPANSION // _MIB} MiB, a 'billion laughs'; write the repeated "
                "parts out instead", alias)


def _yaml_issue(error: yaml.YAMLError | ValueError | RecursionError) -> ConfigIssue:
    """One line for anything composing and constructing can raise.

    A ValueError comes from a scalar YAML resolves but Python cannot build (``2020-13-45`` as a
    date, an integer of 5000 digits); RecursionError should not happen below MAX_NESTING, and
    still must not become a traceback."""
    if isinstance(error, RecursionError):
        return ConfigIssue((), "nested too deeply to read")
    if isinstance(error, _LimitExceeded):
        return ConfigIssue((), error.problem, error.line)
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or error
    return ConfigIssue((), f"not valid YAML: {problem}", mark.line + 1 if mark else None)


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


def _compose(text: str, source: str) -> tuple[Any, _LineMap]:
    """The document's data and where each key is, read once by a :class:`_BoundedLoader`.

    The line map walks the nodes before they are constructed: constructing a ``<<`` merge key
    rewrites its mapping's node, and the map must show the keys as the file has them."""
    loader = _BoundedLoader(text)
    lines = _LineMap()
    try:
        node = loader.get_single_node()
        if node is None:
            return None, lines
        lines.walk(node, ())
        return loader.construct_document(node), lines
    except (yaml.YAMLError, ValueError, RecursionError) as exc:
        raise ConfigError(source, [_yaml_issue(exc)]) from None
    finally:
        loader.dispose()


def parse_config(text: str, source: str = "<config>") -> LoadedConfig:
    """Validate config text; raises :class:`ConfigError` listing every problem."""
    with _cycle_collection_paused():
        return _parse(text, source)


@contextmanager
def _cycle_collection_paused() -> Iterator[None]:
    """A load builds several objects for each YAML node and each entry, and they all live until
    it ends; CPython's cycle collector meanwhile walks them again and again (10 000 accounts:
    twice as long). Nothing a load leaves behind is cyclic garbage worth collecting during it,
    so the collector waits until it is done. When loads overlap in threads, the one that paused
    the collector resumes it."""
    paused = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()


def _parse(text: str, source: str) -> LoadedConfig:
    data, lines = _compose(text, source)
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


def _read_text(path: str | os.PathLike[str], source: str) -> str:
    """The file's text, if it is a regular file of at most MAX_CONFIG_BYTES.

    The type is checked on the opened descriptor, so nothing can be swapped in between, and the
    open does not block on a FIFO (O_NONBLOCK) nor take a terminal (O_NOCTTY)."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
        try:
            return _read_regular(descriptor, source).decode("utf-8")
        finally:
            os.close(descriptor)
    except FileNotFoundError:
        raise _refused(source, "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise _refused(source, f"cannot read: {exc}") from None


def _read_regular(descriptor: int, source: str) -> bytes:
    """The opened file's bytes, if it is a regular file within MAX_CONFIG_BYTES.

    The size is checked, and then not trusted: a file may grow while it is read, so at most one
    byte more than the limit is read."""
    info = os.fstat(descriptor)
    if not stat.S_ISREG(info.st_mode):
        kind = next((name for is_kind, name in _NOT_REGULAR if is_kind(info.st_mode)),
                    "a special file")
        raise _refused(source, f"not a regular file ({kind}); ssftp.yaml must be a regular "
                               "file or a symlink to one")
    if info.st_size <= MAX_CONFIG_BYTES:
        with open(descriptor, "rb", closefd=False) as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)
        if len(data) <= MAX_CONFIG_BYTES:
            return data
    raise _refused(source, f"larger than {MAX_CONFIG_BYTES} bytes "
                           f"({MAX_CONFIG_BYTES // _MIB} MiB), the most ssftp reads as a config "
                           "file")


def _refused(source: str, problem: str) -> ConfigError:
    return ConfigError(source, [ConfigIssue((), problem)])


def load_config(path: str | os.PathLike[str]) -> LoadedConfig:
    """Read and validate a config file; raises :class:`ConfigError`."""
    source = str(path)
    return parse_config(_read_text(path, source), source)
