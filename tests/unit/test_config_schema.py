"""ssftp.config.schema: defaults that clients depend on."""

from __future__ import annotations

from ssftp.config.schema import LimitsSettings


def test_the_default_window_is_16_mib() -> None:
    assert LimitsSettings().channel_window_bytes == 16 << 20
