"""ssftp.config.schema: defaults that clients depend on, and the address lists of limits."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from ssftp.config.schema import LimitsSettings


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
