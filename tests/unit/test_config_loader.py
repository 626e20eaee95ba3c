"""ssftp.config.loader and hostile ssftp.yaml files: each is refused with one clear line, never a
hang or a traceback.

``check-config`` and hot reload share the loader, so a file that makes it hang or run out of
memory would stop an operator's check and a running gateway's reload alike. Each file here is
tried through ``load_config`` and through the real console script (with a deadline and an
address-space limit), and a reload of such a file keeps the last good config."""

from __future__ import annotations

import contextlib
import itertools
import os
import resource
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from ssftp.config import load_config, parse_config
from ssftp.config.loader import MAX_CONFIG_BYTES, MAX_NESTING
from ssftp.config.reload import ConfigStore
from ssftp.errors import ConfigError
from ssftp.layout import DataLayout
from tests.support.cli import SSFTP
from tests.support.logs import app_log_records

GOOD = """\
users:
  stagingDir:
    - directory: partner
      auth: {username: partner, password: partner-pw}
"""
# Nine levels of ten aliases each: a billion "lol"s once expanded, under 1 KiB as written.
LEVELS = "abcdefghi"
BILLION_LAUGHS = "a: &a [" + ", ".join(["lol"] * 10) + "]\n" + "".join(
    f"{name}: &{name} [" + ", ".join([f"*{below}"] * 10) + "]\n"
    for below, name in itertools.pairwise(LEVELS))
CLI_MEMORY_LIMIT = 1024 * 1024 * 1024


def refusal(path: Path) -> str:
    """The one problem ``load_config`` reports for ``path``, as the operator reads it."""
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    issues = caught.value.issues
    assert len(issues) == 1, issues
    return issues[0].describe(str(path))


def limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (CLI_MEMORY_LIMIT, CLI_MEMORY_LIMIT))


def check_config(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SSFTP, "check-config", str(path)], capture_output=True, text=True,
                          timeout=30, preexec_fn=limit_memory)


def assert_cli_refuses(path: Path, expected: str) -> None:
    """Exit 2, the ConfigError's header and its one problem on stderr, nothing else."""
    result = check_config(path)
    assert "Traceback" not in result.stderr
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [f"ssftp check-config: invalid config {path}:",
                                          f"  {expected}"]


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    return tmp_path / "ssftp.yaml"


def test_billion_laughs_is_refused_before_it_expands(config_path: Path) -> None:
    config_path.write_text(BILLION_LAUGHS)
    message = refusal(config_path)
    assert message.startswith(f"{config_path}:6: (top level): YAML aliases would expand")
    assert "billion laughs" in message
    assert_cli_refuses(config_path, message)


def test_an_alias_inside_the_collection_it_names_is_refused(config_path: Path) -> None:
    config_path.write_text("users: &loop\n  stagingDir: [*loop]\n")
    message = refusal(config_path)
    assert message == (f"{config_path}:2: (top level): an alias refers to a collection that "
                       "contains it (a structure without end)")
    assert_cli_refuses(config_path, message)


def test_anchors_for_shared_settings_still_load() -> None:
    """The limits refuse expansion, not aliases: a merge key for shared settings is fine."""
    loaded = parse_config(
        "sftpClientDownloaders:\n"
        "  - &first {name: one, host: h, username: u, password: pw, localStagingDirectory: one}\n"
        "  - {<<: *first, name: two, localStagingDirectory: two}\n", "merge.yaml")
    entries = [(d.name, d.host, d.local_staging_directory)
               for d in loaded.config.sftp_client_downloaders]
    assert entries == [("one", "h", "one"), ("two", "h", "two")]


@pytest.mark.parametrize("text, line", [
    pytest.param("[" * 100_000, 1, id="100000-nested-flow-sequences"),
    pytest.param("a: " + "{a: " * 100_000, 1, id="100000-nested-flow-mappings"),
    pytest.param("".join("  " * level + "a:\n" for level in range(200)), MAX_NESTING + 1,
                 id="200-nested-block-mappings"),
])
def test_deep_nesting_is_refused(config_path: Path, text: str, line: int) -> None:
    config_path.write_text(text)
    message = refusal(config_path)
    assert message == (f"{config_path}:{line}: (top level): nested deeper than {MAX_NESTING} "
                       "levels")
    assert_cli_refuses(config_path, message)


def test_nesting_up_to_the_limit_is_only_judged_by_the_schema(config_path: Path) -> None:
    config_path.write_text("logDests:\n  - kind: stdout\n    props: " + "[" * (MAX_NESTING - 3)
                           + "]" * (MAX_NESTING - 3) + "\n")
    message = refusal(config_path)
    assert "nested deeper" not in message and "logDests[0].props" in message


def test_a_symlink_to_dev_zero_is_refused(config_path: Path) -> None:
    config_path.symlink_to("/dev/zero")
    message = refusal(config_path)
    assert message == (f"{config_path}: (top level): not a regular file (a character device); "
                       "ssftp.yaml must be a regular file or a symlink to one")
    assert_cli_refuses(config_path, message)


def test_a_symlink_to_a_regular_file_loads(tmp_path: Path, config_path: Path) -> None:
    (tmp_path / "real.yaml").write_text(GOOD)
    config_path.symlink_to(tmp_path / "real.yaml")
    assert load_config(config_path).config.users.staging_dir[0].directory == "partner"


@pytest.fixture
def fifo(config_path: Path) -> Iterator[Path]:
    """A FIFO as the config path; on teardown a writer comes and goes, so that a loader that
    did block in open() (the defect) returns instead of hanging the test run."""
    os.mkfifo(config_path)
    yield config_path
    with contextlib.suppress(OSError):  # ENXIO: no reader is waiting, nothing blocked
        os.close(os.open(config_path, os.O_WRONLY | os.O_NONBLOCK))


def test_a_fifo_is_refused_without_blocking(fifo: Path) -> None:
    outcome: list[str] = []
    thread = threading.Thread(target=lambda: outcome.append(refusal(fifo)), daemon=True)
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive(), "load_config blocked opening a FIFO"
    assert outcome == [f"{fifo}: (top level): not a regular file (a FIFO); "
                       "ssftp.yaml must be a regular file or a symlink to one"]
    assert_cli_refuses(fifo, outcome[0])


def test_a_directory_is_refused(config_path: Path) -> None:
    config_path.mkdir()
    message = refusal(config_path)
    assert message == (f"{config_path}: (top level): not a regular file (a directory); "
                       "ssftp.yaml must be a regular file or a symlink to one")
    assert_cli_refuses(config_path, message)


def test_an_oversize_file_is_refused(config_path: Path) -> None:
    # Valid YAML that would load: only its size is wrong.
    config_path.write_text(GOOD + ("# padding\n" * (MAX_CONFIG_BYTES // 10 + 1)))
    message = refusal(config_path)
    assert message == (f"{config_path}: (top level): larger than {MAX_CONFIG_BYTES} bytes "
                       "(4 MiB), the most ssftp reads as a config file")
    assert_cli_refuses(config_path, message)


def test_a_file_of_exactly_the_limit_loads(config_path: Path) -> None:
    padding = MAX_CONFIG_BYTES - len(GOOD.encode())
    config_path.write_text(GOOD + "#" * (padding - 1) + "\n")
    assert config_path.stat().st_size == MAX_CONFIG_BYTES
    assert load_config(config_path).config.users.staging_dir[0].auth.username == "partner"


@pytest.mark.parametrize("text, expected", [
    ("sftpPort: 2020-13-45\n", "not valid YAML: month must be in 1..12"),
    ("sftpPort: " + "1" * 5000 + "\n", "not valid YAML: Exceeds the limit (4300 digits)"),
    ("sftpPort: !!float nope\n", "not valid YAML: could not convert string to float"),
])
def test_values_yaml_cannot_construct_are_one_line(config_path: Path, text: str,
                                                   expected: str) -> None:
    config_path.write_text(text)
    message = refusal(config_path)
    assert message.startswith(f"{config_path}: (top level): {expected}")
    assert_cli_refuses(config_path, message)


def test_undecodable_bytes_are_one_line(config_path: Path) -> None:
    config_path.write_bytes(b"sftpPort: 2002\ninstanceName: \xff\xfe\n")
    assert "cannot read: 'utf-8' codec can't decode" in refusal(config_path)


def test_reload_of_a_hostile_file_keeps_the_last_good_config(tmp_path: Path,
                                                              config_path: Path) -> None:
    config_path.write_text(GOOD)
    store = ConfigStore.open(config_path, DataLayout.at(tmp_path / "data"))
    good = store.current
    with app_log_records() as seen:
        for hostile in ("[" * 100_000, BILLION_LAUGHS):
            config_path.write_text(hostile)
            assert not store.reload()
            assert store.current is good
        config_path.unlink()
        config_path.symlink_to("/dev/zero")
        assert not store.reload()
        assert store.current is good
    rejected = [r.fields["problems"] for r in seen  # type: ignore[attr-defined]
                if r.getMessage().startswith("config change rejected")]
    assert [len(problems) for problems in rejected] == [1, 1, 1]
    assert "nested deeper" in rejected[0][0]
    assert "billion laughs" in rejected[1][0]
    assert "a character device" in rejected[2][0]
    assert list(store.current.accounts) == ["partner"]
