"""ssftp.config: ssftp.yaml as it is loaded. sSFTP files load unchanged; bad files are refused
naming the key and the line; the sections the scan pipeline, the metrics listener and
``verdictOnClose`` read, with their defaults."""

from __future__ import annotations

import re
import socket
import textwrap
from pathlib import Path

import pytest

from ssftp.addresses import ClamdAddress
from ssftp.config import load_config, parse_config
from ssftp.config.accounts import AccountKind, accounts_from_config
from ssftp.errors import ConfigError
from ssftp.layout import DataLayout
from ssftp.passwords import hash_password
from ssftp.permissions import Permission
from tests.support.cli import ssftp
from tests.support.config import write_config
from tests.support.repo import REPO

SHARED_EXAMPLE = REPO.parent / "shared" / "ssftp-compat-example.yaml"
PROJECT_EXAMPLE = REPO / "config" / "ssftp.example.yaml"


def parse(text: str):
    return parse_config(textwrap.dedent(text), "test.yaml")


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse(text)
    return [issue.describe("test.yaml") for issue in caught.value.issues]


def test_ssftp_compat_example_loads_unchanged():
    loaded = load_config(SHARED_EXAMPLE)
    config = loaded.config
    assert config.sftp_port == 2002
    assert config.enable_sftp_client_downloader and config.enable_sftp_client_uploader
    assert config.webhooks[0].name == "virusFound"
    assert config.log_dests[0].props["path"] == "/mnt/ssftp/log"
    assert config.users.staging_dir[0].directory == "stage-dir-1"
    assert config.users.clean_dir[0].auth.username == "username-of-clean-dir-1"
    downloader = config.sftp_client_downloaders[0]
    assert downloader.private_key_path == "/mnt/ssftp/system/downloaders/partner.pem"
    assert downloader.private_key_passphrase.get_secret_value() == "password-for-privatekey"
    assert downloader.delete_remote_file_after_download is False
    uploader = config.sftp_client_uploaders[0]
    assert uploader.private_key_path is None
    assert uploader.local_directory_to_upload == "clean-dir-1"
    # Plaintext passwords and the example's placeholder keys load, with a warning each.
    messages = [warning.describe(loaded.source) for warning in loaded.warnings]
    assert sum("plaintext password" in m for m in messages) == 2
    assert sum("this key is ignored" in m for m in messages) == 2
    assert any(":21: users.stagingDir[0].auth.password" in m for m in messages)


def test_project_example_is_valid_and_hashed():
    loaded = load_config(PROJECT_EXAMPLE)
    assert loaded.warnings == []
    accounts = accounts_from_config(loaded.config, DataLayout.at("/data"))
    assert accounts["partner1"].password.scheme == "bcrypt"
    assert accounts["consumer1"].password.scheme == "argon2id"
    assert accounts["partner1"].password.verify("partner-demo-pw")
    assert accounts["consumer1"].password.verify("consumer-demo-pw")


def test_secrets_never_appear_in_repr_or_errors():
    text = """
    users:
      stagingDir:
        - directory: d
          auth: {username: "bad user!", password: hunter2-secret}
    """
    assert not any("hunter2-secret" in message for message in problems(text))
    loaded = parse("""
    users:
      stagingDir:
        - directory: d
          auth: {username: u, password: hunter2-secret}
    """)
    assert "hunter2-secret" not in repr(loaded.config)


def test_unknown_key_names_path_and_line():
    text = """
    sftpPort: 2002
    users:
      stagingDir:
        - directory: d
          auth:
            username: u
            pasword: typo
    """
    assert problems(text) == [
        "test.yaml:8: users.stagingDir[0].auth.pasword: unknown key (check the spelling; keys "
        "are camelCase as in sSFTP)",
    ]


def test_missing_field_is_named():
    text = """
    users:
      cleanDir:
        - directory: d
          auth:
            password: x
    """
    assert problems(text) == ["test.yaml:5: users.cleanDir[0].auth.username: Field required"]


@pytest.mark.parametrize(
    ("directory", "expected"),
    [
        ("../etc", "must not contain '..'"),
        ("a/../../b", "must not contain '..'"),
        ("/abs", "must be a relative directory name"),
        ("a\\\\b", "must be a relative directory name"),
        ("*", "'*' is only allowed for cleanDir accounts"),
        ("", "must be a relative directory name"),
    ],
)
def test_bad_staging_directories(directory, expected):
    text = f"""
    users:
      stagingDir:
        - directory: "{directory}"
          auth: {{username: u, password: p}}
    """
    found = problems(text)
    assert len(found) == 1
    assert found[0].startswith("test.yaml:4: users.stagingDir[0].directory: ")
    assert expected in found[0]


def test_duplicate_and_overlapping_directories_and_users():
    text = """
    users:
      stagingDir:
        - directory: a
          auth: {username: u1, password: p}
        - directory: a
          auth: {username: u2, password: p}
        - directory: a/sub
          auth: {username: u1, password: p}
    """
    found = problems(text)
    assert "test.yaml:6: users.stagingDir[1].directory: 'a' is the same as 'a' of " \
           "users.stagingDir[0]: accounts would see each other's files" in found
    assert any(m.startswith("test.yaml:8: users.stagingDir[2].directory: 'a/sub' overlaps")
               for m in found)
    assert "test.yaml:9: users.stagingDir[2].auth.username: username 'u1' is already used " \
           "by users.stagingDir[0]" in found


def test_clean_wildcard_and_permissions():
    loaded = parse("""
    users:
      cleanDir:
        - directory: "*"
          allowDelete: true
          auth: {username: admin, password: p}
        - directory: x
          permissions: [list, download, delete_files]
          auth: {username: reader, password: p}
    """)
    accounts = accounts_from_config(loaded.config, DataLayout.at("/data"))
    assert accounts["admin"].root == Path("/data/clean")
    assert accounts["admin"].kind is AccountKind.CLEAN
    assert Permission.DELETE in accounts["admin"].permissions
    assert Permission.DELETE in accounts["reader"].permissions
    assert Permission.UPLOAD not in accounts["reader"].permissions


def test_link_permissions_are_refused():
    found = problems("""
    users:
      stagingDir:
        - directory: d
          permissions: ["*", create_symlinks]
          auth: {username: u, password: p}
    """)
    assert len(found) == 1 and "users.stagingDir[0].permissions" in found[0]
    assert "creating links is never allowed" in found[0]


def test_duplicate_yaml_key_is_an_error():
    found = problems("""
    users:
      stagingDir:
        - directory: d
          auth:
            username: u
            password: first
            password: second
    """)
    assert found == ["test.yaml:8: users.stagingDir[0].auth.password: key appears twice"]


def test_invalid_yaml_names_line():
    found = problems("""
    users:
      stagingDir:
        - directory: d
         auth: [
    """)
    assert len(found) == 1 and found[0].startswith("test.yaml:5: (top level): not valid YAML")


def test_environment_references(monkeypatch):
    monkeypatch.setenv("PARTNER_PW", "from-env")
    loaded = parse("""
    users:
      stagingDir:
        - directory: d
          auth: {username: u, password: "${PARTNER_PW}"}
    webhooks:
      - name: virusFound
        url: "https://example.test/$${literal}"
    """)
    assert loaded.config.users.staging_dir[0].auth.password.get_secret_value() == "from-env"
    assert loaded.config.webhooks[0].url == "https://example.test/${literal}"
    monkeypatch.delenv("PARTNER_PW")
    found = problems("""
    users:
      stagingDir:
        - directory: d
          auth: {username: u, password: "${PARTNER_PW}"}
    """)
    assert found == ["test.yaml:5: users.stagingDir[0].auth.password: environment variable "
                     "PARTNER_PW is not set"]


def test_malformed_hash_is_an_error_not_plaintext():
    found = problems("""
    users:
      stagingDir:
        - directory: d
          auth: {username: u, password: "$2b$12$tooshort"}
    """)
    assert found == ["test.yaml:5: users.stagingDir[0].auth.password: looks like a bcrypt hash "
                     "but is malformed"]


def test_downloader_checks():
    found = problems("""
    sftpClientDownloaders:
      - name: one
        host: h
        username: u
        localStagingDirectory: "*"
        interval: 60
        cron: "* * * * *"
    sftpClientUploaders:
      - name: one
        host: h
        username: u
        localDirectoryToUpload: x
    """)
    assert any("sftpClientDownloaders[0]: set either interval or cron" in m for m in found)
    found = problems("""
    sftpClientDownloaders:
      - name: one
        host: h
        username: u
        localStagingDirectory: "*"
    sftpClientUploaders:
      - name: one
        host: h
        username: u
        localDirectoryToUpload: x
    """)
    assert "test.yaml:8: sftpClientUploaders[0].name: name 'one' is already used by " \
           "sftpClientDownloaders[0].name" in found
    assert "test.yaml:6: sftpClientDownloaders[0].localStagingDirectory: '*' is not a " \
           "staging directory; name one" in found


def test_missing_file_is_reported(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "absent.yaml")


def test_transfer_directories_may_not_overlap():
    found = problems("""
    users:
      stagingDir:
        - directory: partners/a
          auth: {username: a, password: pw}
    sftpClientDownloaders:
      - {name: d1, host: h, username: u, localStagingDirectory: partners}
      - {name: d2, host: h, username: u, localStagingDirectory: other}
      - {name: d3, host: h, username: u, localStagingDirectory: other/deeper}
    sftpClientUploaders:
      - {name: u1, host: h, username: u, localDirectoryToUpload: out}
      - {name: u2, host: h, username: u, localDirectoryToUpload: out}
      - {name: u3, host: h, username: u, localDirectoryToUpload: "*"}
    """)
    assert ("test.yaml:7: sftpClientDownloaders[0].localStagingDirectory: 'partners' overlaps "
            "'partners/a' of users.stagingDir[0].directory: their files would mix") in found
    assert ("test.yaml:9: sftpClientDownloaders[2].localStagingDirectory: 'other/deeper' "
            "overlaps 'other' of sftpClientDownloaders[1].localStagingDirectory: their files "
            "would mix") in found
    assert ("test.yaml:12: sftpClientUploaders[1].localDirectoryToUpload: 'out' overlaps 'out' "
            "of sftpClientUploaders[0].localDirectoryToUpload: both would send the same "
            "files") in found
    assert sum("sftpClientUploaders[2].localDirectoryToUpload" in m for m in found) == 2
    assert len(found) == 5


def test_transfer_schedules_fingerprints_and_settings():
    found = problems("""
    transfers: {retries: -1, maxConnectionsPerHost: 0}
    sftpClientDownloaders:
      - name: d1
        host: h
        username: u
        localStagingDirectory: d1
        cron: "61 * * * *"
        hostKeyFingerprint: "MD5:aa:bb"
    """)
    assert any("transfers.retries" in m for m in found)
    assert any("transfers.maxConnectionsPerHost" in m for m in found)
    assert any("sftpClientDownloaders[0].cron: not a cron expression (Bad minute)" in m
               for m in found)
    assert any("sftpClientDownloaders[0].hostKeyFingerprint: expected an OpenSSH "
               "SHA256 fingerprint" in m for m in found)
    config = parse("""
    sftpClientDownloaders:
      - {name: every, host: h, username: u, localStagingDirectory: a, interval: 300}
      - {name: hourly, host: h, username: u, localStagingDirectory: b, cron: "0 * * * *"}
      - {name: default, host: h, username: u, localStagingDirectory: c,
         hostKeyFingerprint: "SHA256:xpr/wj5gURxIw9avjaWY4OzpvLrCd164VwMRLDl+DRk="}
    """).config
    assert [entry.schedule for entry in config.sftp_client_downloaders] == [
        ("interval", 300), ("cron", "0 * * * *"), ("interval", 60)]
    # The trailing "=" some tools print is dropped, as OpenSSH prints it without.
    assert config.sftp_client_downloaders[2].host_key_fingerprint == \
        "SHA256:xpr/wj5gURxIw9avjaWY4OzpvLrCd164VwMRLDl+DRk"
    assert config.transfers.max_connections_per_host == 2


def test_metrics_listen_is_off_unless_configured(tmp_path):
    assert load_config(write_config(tmp_path / "a.yaml", "{}")).config.metrics.listen is None
    config = load_config(write_config(tmp_path / "b.yaml", """
    metrics:
      listen: "127.0.0.1:9464"
    """)).config
    assert config.metrics.listen == "127.0.0.1:9464"


def test_a_bad_metrics_listen_is_a_config_error_at_its_key(tmp_path):
    path = write_config(tmp_path / "bad.yaml", """
    metrics:
      listen: "9464"
    """)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert "metrics.listen" in str(caught.value) and "HOST:PORT" in str(caught.value)
    result = ssftp("check-config", str(path))
    assert result.returncode == 2
    assert "metrics.listen" in result.stderr and "Traceback" not in result.stderr


# --- the sections the scan pipeline reads ---------------------------------------------------------


def load_yaml(tmp_path: Path, text: str):
    path = tmp_path / "ssftp.yaml"
    path.write_text(textwrap.dedent(text).lstrip())
    return load_config(path)


def issue_paths(error: ConfigError) -> list[str]:
    return [issue.dotted for issue in error.issues]


def test_a_bad_clamd_address_is_refused_with_its_key(tmp_path):
    with pytest.raises(ConfigError) as raised:
        load_yaml(tmp_path, """
            sftpPort: 2022
            clamav:
              address: nonsense
            """)
    assert issue_paths(raised.value) == ["clamav.address"]
    assert raised.value.issues[0].line == 3
    assert "a clamd address is a socket path" in str(raised.value)
    assert "clamav.address" in str(raised.value)


@pytest.mark.parametrize("address", ["/run/clamav/clamd.sock", "unix:/run/c.sock",
                                     "tcp://clamav:3310", "clamav:3310", "tcp://[::1]:3310"])
def test_good_clamd_addresses_load(tmp_path, address):
    config = load_yaml(tmp_path, f"""
        clamav:
          address: "{address}"
          mode: stream
          maxFileSize: 1048576
          timeout: 30
        """).config
    assert config.clamav.address == address
    assert ClamdAddress.parse(config.clamav.address) is not None
    assert (config.clamav.mode, config.clamav.max_file_size, config.clamav.timeout) == (
        "stream", 1048576, 30.0)


@pytest.mark.parametrize(("section", "key"), [
    ("clamav:\n  mode: bogus", "clamav.mode"),
    ("clamav:\n  maxFileSize: 0", "clamav.maxFileSize"),
    ("scanning:\n  stableSeconds: -1", "scanning.stableSeconds"),
    ("scanning:\n  retryInitialSeconds: 0", "scanning.retryInitialSeconds"),
    ("scanning:\n  maxBatchFiles: 0", "scanning.maxBatchFiles"),
    ("scanning:\n  largeFileSize: 0", "scanning.largeFileSize"),
    ("scanning:\n  batchWindow: 1", "scanning.batchWindow"),
    ("instanceName: ''", "instanceName"),
])
def test_bad_pipeline_settings_are_refused(tmp_path, section, key):
    with pytest.raises(ConfigError) as raised:
        load_yaml(tmp_path, section + "\n")
    assert issue_paths(raised.value) == [key]


def test_pipeline_settings_and_defaults(tmp_path):
    defaults = load_yaml(tmp_path, "sftpPort: 2022\n").config
    assert defaults.instance_name == socket.gethostname()
    assert defaults.enable_virus_scan is True
    assert defaults.clamav.address is None and defaults.clamav.mode == "auto"
    assert defaults.scanning.stable_seconds > 0
    assert defaults.scanning.retry_initial_seconds <= defaults.scanning.retry_max_seconds

    config = load_yaml(tmp_path, """
        instanceName: gateway-eu-1
        scanning:
          stableSeconds: 2
          batchWindowSeconds: 0.5
          maxBatchFiles: 10
          largeFileSize: 1048576
          retryInitialSeconds: 1
          retryMaxSeconds: 60
        webhooks:
          - name: virusFound
            url: https://hooks.example.com/v
            retryDelaySeconds: 0.5
          - name: scanError
            url: https://hooks.example.com/e
        """).config
    assert config.instance_name == "gateway-eu-1"
    scanning = config.scanning
    assert (scanning.stable_seconds, scanning.batch_window_seconds, scanning.max_batch_files,
            scanning.large_file_size, scanning.retry_initial_seconds,
            scanning.retry_max_seconds) == (2, 0.5, 10, 1048576, 1, 60)
    assert [w.retry_delay_seconds for w in config.webhooks] == [0.5, 2.0]


def test_a_negative_webhook_retry_delay_is_refused(tmp_path):
    with pytest.raises(ConfigError) as raised:
        load_yaml(tmp_path, """
            webhooks:
              - name: virusFound
                url: https://hooks.example.com/v
                retryDelaySeconds: -1
            """)
    assert issue_paths(raised.value) == ["webhooks[0].retryDelaySeconds"]


@pytest.mark.parametrize("directory", [".ssftp-claims", "partner/.ssftp-tmp-x", ".ssftp-x/y"])
def test_reserved_names_are_refused_as_staging_directories(tmp_path, directory):
    with pytest.raises(ConfigError) as raised:
        load_yaml(tmp_path, f"""
            users:
              stagingDir:
                - directory: "{directory}"
                  auth:
                    username: partner
                    password: pw
            sftpClientDownloaders:
              - name: dl
                host: sftp.example.com
                username: remote
                password: pw
                localStagingDirectory: "{directory}"
            """)
    assert issue_paths(raised.value) == ["users.stagingDir[0].directory",
                                         "sftpClientDownloaders[0].localStagingDirectory"]
    assert "reserved for ssftp" in str(raised.value)


# --- scanning.verdictOnClose ----------------------------------------------------------------------


def scanning(value: str) -> str:
    return textwrap.dedent(f"""\
        scanning:
          verdictOnClose: {value}
        users:
          stagingDir:
            - directory: partner-a
              auth: {{username: partner-a, password: pw}}
        """)


def test_verdict_on_close_is_off_by_default_and_takes_seconds():
    assert parse_config(scanning("null"), "t.yaml").config.scanning.verdict_on_close is None
    assert parse_config("{}", "t.yaml").config.scanning.verdict_on_close is None
    assert parse_config(scanning("30"), "t.yaml").config.scanning.verdict_on_close == 30.0
    assert parse_config(scanning("0.5"), "t.yaml").config.scanning.verdict_on_close == 0.5
    assert parse_config(scanning("300"), "t.yaml").config.scanning.verdict_on_close == 300.0


@pytest.mark.parametrize(("value", "expected"), [
    ("0", "Input should be greater than 0"),
    ("-5", "Input should be greater than 0"),
    ("301", "Input should be less than or equal to 300"),
    ("true", "Input should be a valid number"),
    ("soon", "Input should be a valid number"),
    ("'30'", "Input should be a valid number"),
])
def test_a_bad_verdict_on_close_is_one_line_naming_the_key(value: str, expected: str):
    with pytest.raises(ConfigError) as caught:
        parse_config(scanning(value), "t.yaml")
    (issue,) = caught.value.issues
    line = issue.describe("t.yaml")
    assert line.startswith("t.yaml:2: scanning.verdictOnClose: "), line
    assert expected in line
    assert "\n" not in line


def test_a_file_type_that_is_not_a_mime_type_is_refused_with_its_key(tmp_path):
    with pytest.raises(ConfigError) as raised:
        load_yaml(tmp_path, """
            users:
              stagingDir:
                - directory: a
                  allowedFileTypes: ["text/*", ".csv"]
                  auth: {username: a, password: pw}
            """)
    assert issue_paths(raised.value) == ["users.stagingDir[0].allowedFileTypes"]
    assert "'.csv' is not a MIME type" in str(raised.value)


def test_each_owner_that_allows_encrypted_files_is_named_in_a_warning(tmp_path):
    hashed = hash_password("pw")
    loaded = load_yaml(tmp_path, f"""
        users:
          stagingDir:
            - directory: a
              auth: {{username: a, password: "{hashed}"}}
            - directory: b
              allowEncrypted: true
              auth: {{username: b, password: "{hashed}"}}
        """)
    messages = [warning.describe(loaded.source) for warning in loaded.warnings]
    assert len(messages) == 1
    assert "users.stagingDir[1].allowEncrypted" in messages[0]
    assert "b's encrypted archives and documents pass to clean/ uninspected" in messages[0]


def test_scanning_engines_are_checked_where_they_are_written(tmp_path):
    """A pool of clamds, ICAP servers, and the rule that something must scan."""
    assert problems("""
        clamav: {address: ["/run/a.sock", "/run/a.sock"]}
        icap: {servers: ["http://scanner/avscan"]}
        """) == [
        "test.yaml:2: clamav.address: a clamd is named twice",
        "test.yaml:3: icap.servers: ICAP server 'http://scanner/avscan': the URL must start "
        "with icap:// (e.g. icap://127.0.0.1:1344/avscan)"]
    (issue,) = problems("clamav: {enabled: false}\n")
    assert "no engine would scan: clamav.enabled is false and icap.servers is empty" in issue
    loaded = parse("""
        clamav: {address: ["/run/a.sock", "clamd:3310"]}
        icap: {servers: ["icap://scanner/avscan"]}
        """)
    assert [str(a) for a in loaded.config.clamav.addresses] == ["/run/a.sock",
                                                                 "tcp://clamd:3310"]
    assert [str(a) for a in loaded.config.icap.addresses] == ["icap://scanner:1344/avscan"]


# --- filePatterns ----------------------------------------------------------------------------


def _account_with(kind: str, key: str, body: str) -> str:
    """A config of one account ``a`` of ``kind`` whose ``key`` is ``body`` (on line 7)."""
    return textwrap.dedent(f"""
        users:
          {kind}:
            - directory: a
              auth: {{username: a, password: pw}}
              {key}:
        """) + textwrap.indent(textwrap.dedent(body), " " * 16)


def _with_patterns(body: str) -> str:
    return _account_with("cleanDir", "filePatterns", body)


def test_file_patterns_are_compiled_per_account_and_absent_ones_cost_nothing(tmp_path):
    config = parse(_with_patterns("""
        denied: ["*.exe"]
        directories:
          /reports/: {allowed: ["*.csv"]}
          in/2024: {}
        """)).config
    (account,) = accounts_from_config(config, DataLayout.at(tmp_path)).values()
    assert account.file_patterns is not None
    assert account.file_patterns.refusal("/", "X.EXE") == "name refused by filePatterns: *.exe"
    assert account.file_patterns.refusal("/reports", "x.exe") is not None
    assert account.file_patterns.refusal("/reports", "x.csv") is None
    assert account.file_patterns.refusal("/in/2024", "x.exe") is None
    for body in ("{}", "directories: {x: {}}"):
        bare = parse(_with_patterns(body)).config
        assert accounts_from_config(bare, DataLayout.at(tmp_path))["a"].file_patterns is None


@pytest.mark.parametrize(("body", "key", "expected"), [
    ('denied: ["in/*.exe"]', "filePatterns.denied[0]", "cannot contain '/'"),
    ('allowed: [""]', "filePatterns.allowed[0]", "an empty pattern matches no name"),
    ('directories: {"/": {denied: ["*.x"]}}', "filePatterns.directories./",
     "the account's root has its patterns in filePatterns.allowed"),
    ('directories: {"../b": {}}', "filePatterns.directories.../b", "must not contain '..'"),
    ('directories: {"*": {}}', "filePatterns.directories.*", "'*' is not a directory"),
    ('directories: {"/in": {}, "in/": {}}', "filePatterns.directories",
     "'in/' is the same directory as '/in'"),
    ('directories: {in: {deny: ["*.x"]}}', "filePatterns.directories.in.deny", "unknown key"),
    ('denyed: ["*.x"]', "filePatterns.denyed", "unknown key"),
])
def test_a_bad_file_pattern_is_one_line_naming_its_key(body: str, key: str, expected: str):
    (line,) = problems(_with_patterns(body))
    assert line.startswith(f"test.yaml:7: users.cleanDir[0].{key}: "), line
    assert expected in line
    assert "\n" not in line


def test_check_config_names_a_bad_file_pattern_in_one_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(_with_patterns('denied: ["bin/*.exe"]'))
    result = ssftp("check-config", str(path))
    assert result.returncode == 2
    assert "users.cleanDir[0].filePatterns.denied[0]" in result.stderr
    assert "cannot contain '/'" in result.stderr
    assert "Traceback" not in result.stderr


def _with_quota(body: str) -> str:
    return _account_with("stagingDir", "quota", body)


def test_a_quota_reaches_the_account_and_its_absence_costs_nothing(tmp_path):
    config = parse(_with_quota("{maxBytes: 1073741824, maxFiles: 3}")).config
    (account,) = accounts_from_config(config, DataLayout.at(tmp_path)).values()
    assert account.quota is not None
    assert (account.quota.max_bytes, account.quota.max_files) == (1 << 30, 3)
    only_files = parse(_with_quota("{maxFiles: 3}")).config
    quota = accounts_from_config(only_files, DataLayout.at(tmp_path))["a"].quota
    assert quota is not None and quota.max_bytes is None
    bare = parse(_with_quota("").replace("quota:", "")).config
    assert accounts_from_config(bare, DataLayout.at(tmp_path))["a"].quota is None


@pytest.mark.parametrize(("body", "key", "expected"), [
    ("{}", "quota", "a quota needs maxBytes or maxFiles"),
    ("{maxBytes: 0}", "quota.maxBytes", "greater than or equal to 1"),
    ("{maxFiles: -1}", "quota.maxFiles", "greater than or equal to 1"),
    ("{maxBytes: 1GiB}", "quota.maxBytes", "a number of bytes without a unit, such as "
     "1073741824 for 1 GiB"),
    ("{maxbytes: 10}", "quota.maxbytes", "unknown key"),
])
def test_a_bad_quota_is_one_line_naming_its_key(body: str, key: str, expected: str):
    (line,) = problems(_with_quota(body))
    assert re.match(rf"test\.yaml:[67]: users\.stagingDir\[0\]\.{re.escape(key)}: ", line), line
    assert expected in line
    assert "\n" not in line
