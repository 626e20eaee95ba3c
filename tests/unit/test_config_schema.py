"""ssftp.config.schema: defaults that clients depend on, the address lists of limits, and
bandwidth."""

from __future__ import annotations

import textwrap

import pytest
from pydantic import ValidationError

from ssftp.config.loader import parse_config
from ssftp.config.schema import LimitsSettings
from ssftp.errors import ConfigError


def test_the_default_window_is_16_mib() -> None:
    assert LimitsSettings().channel_window_bytes == 16 << 20


def test_address_lists_are_parsed_once_and_a_bad_entry_is_named() -> None:
    limits = LimitsSettings.model_validate({"allowedIps": ["10.0.0.0/8"],
                                            "deniedIps": ["10.0.0.2", "2001:db8::/32"]})
    assert limits.address_filter.refusal("10.0.0.2") == "deniedIps"
    assert limits.address_filter.refusal("10.0.0.3") is None
    assert limits.proxies == ()  # no proxyProtocol: no header read from anyone
    with pytest.raises(ValidationError, match=r"'10\.0\.0\.300' is not an IP address"):
        LimitsSettings.model_validate({"deniedIps": ["10.0.0.300"]})


def test_the_proxy_protocol_needs_its_trusted_proxies() -> None:
    with pytest.raises(ValidationError, match="proxyProtocol needs trustedProxies"):
        LimitsSettings.model_validate({"proxyProtocol": True})
    limits = LimitsSettings.model_validate({"proxyProtocol": True,
                                            "trustedProxies": ["127.0.0.1", "10.1.0.0/16"]})
    assert [str(network) for network in limits.proxies] == ["127.0.0.1/32", "10.1.0.0/16"]


def test_bandwidth_is_per_account_over_a_default_and_unset_by_default() -> None:
    config = parse_config(textwrap.dedent("""
        limits:
          bandwidth: {uploadKiBps: 10240, downloadKiBps: 20480}
        users:
          stagingDir:
            - directory: partner
              bandwidth: {uploadKiBps: 0}
              auth: {username: partner, password: pw}
          cleanDir:
            - directory: partner
              auth: {username: consumer, password: pw}
        """)).config
    assert config.limits.bandwidth.upload_ki_bps == 10240
    assert config.users.staging_dir[0].bandwidth.upload_ki_bps == 0
    assert config.users.staging_dir[0].bandwidth.download_ki_bps is None  # keeps the default
    assert config.users.clean_dir[0].bandwidth.upload_ki_bps is None
    assert LimitsSettings().bandwidth.download_ki_bps is None  # unlimited


@pytest.mark.parametrize(("text", "key", "message"), [
    ("limits:\n  bandwidth: {uploadKiBps: -1}\n", "limits.bandwidth.uploadKiBps",
     "greater than or equal to 0"),
    ("users:\n  cleanDir:\n    - directory: c\n      bandwidth: {downloadKiBps: -5}\n"
     "      auth: {username: c, password: pw}\n",
     "users.cleanDir[0].bandwidth.downloadKiBps", "greater than or equal to 0"),
    ("limits:\n  bandwidth: {uploadKiBps: 99999999999}\n", "limits.bandwidth.uploadKiBps",
     "less than or equal to 16777216"),
    ("limits:\n  bandwidth: {uploadKBps: 10}\n", "limits.bandwidth.uploadKBps",
     "unknown key"),
])
def test_a_bad_bandwidth_is_one_line_naming_its_key(text: str, key: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "ssftp.yaml")
    (issue,) = caught.value.issues
    line = issue.describe("ssftp.yaml")
    assert key in line and message in line and "\n" not in line


def test_concurrent_runs_is_auto_unless_a_number_of_runs_is_given() -> None:
    def runs(text: str) -> object:
        return parse_config(text, "ssftp.yaml").config.scanning.concurrent_runs

    assert runs("{}") == "auto"
    assert runs("scanning: {concurrentRuns: auto}") == "auto"
    assert runs("scanning: {concurrentRuns: }") == "auto"
    assert runs("scanning: {concurrentRuns: 4}") == 4


@pytest.mark.parametrize(("key", "value", "wanted"), [
    *[("concurrentRuns", value, "a number of runs from 1 to 32, or auto")
      for value in ("0", "33", "many", "true", "'4'", "1.5")],
    *[("cleanFileEvents", value, "true, false or auto")
      for value in ("1", "yes please", "'true'", "4")]])
def test_a_bad_number_of_runs_or_event_switch_is_one_line_naming_its_key(
        key: str, value: str, wanted: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(f"scanning:\n  {key}: {value}\n", "ssftp.yaml")
    (issue,) = caught.value.issues
    line = issue.describe("ssftp.yaml")
    assert line.startswith(f"ssftp.yaml:2: scanning.{key}: "), line
    assert wanted in line and "\n" not in line


def test_clean_file_events_is_auto_unless_true_or_false_is_given() -> None:
    def events(text: str) -> object:
        return parse_config(text, "ssftp.yaml").config.scanning.clean_file_events

    assert events("{}") == "auto"
    assert events("scanning: {cleanFileEvents: }") == "auto"
    assert events("scanning: {cleanFileEvents: true}") is True
    assert events("scanning: {cleanFileEvents: false}") is False
