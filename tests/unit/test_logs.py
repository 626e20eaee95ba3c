"""ssftp.logs: what the text console shows of names partners chose."""

from __future__ import annotations

import logging

from ssftp.logs import APP, TextFormatter


def test_the_text_console_escapes_what_a_terminal_would_act_on():
    """Fields carry names partners chose; one that is not UTF-8 (a surrogate from the file
    system) is shown as its byte, never raises. On main ESC, BEL and C1 reached the console."""
    record = logging.getLogger(APP).makeRecord(
        APP, logging.WARNING, __file__, 0, "refused", (), None,
        extra={"fields": {"path": "in/\x1b]0;PWNED\x07\x9b-\udcff.txt", "user": "u"}})
    line = TextFormatter().format(record)
    assert line.endswith("warning  refused  path=in/\\x1b]0;PWNED\\x07\\x9b-\\xff.txt user=u")
    assert all(char.isprintable() for char in line)
