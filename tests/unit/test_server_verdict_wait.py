"""server.verdict_wait's reading of a verdict record: a record of another file tells nothing, and
the message a client shows is printable and short. The wait against files moved by the real
scanner is in tests/integration/test_server_verdict_wait.py."""

from __future__ import annotations

import pytest

from server.verdict_wait import (
    MESSAGE_LIMIT,
    verdict_message,
)

# --- the record: is it this file's? -------------------------------------------------------


def record(**fields: object) -> dict[str, object]:
    return {"destination": "quarantine/partner-a/x.com", "size": 68, "verdict": "infected",
            "signature": "Eicar-Test-Signature", "detail": "found", **fields}


def test_a_matching_record_gives_the_signature_or_the_reason():
    assert verdict_message(record(), "quarantine/partner-a/x.com", 68) == \
        "infected: Eicar-Test-Signature"
    assert verdict_message(record(verdict="unscannable", signature=None,
                                  detail="larger than clamav.maxFileSize"),
                           "quarantine/partner-a/x.com", 68) == \
        "unscannable: larger than clamav.maxFileSize"
    # Not read by the scanner (several hard links): no size to compare.
    assert verdict_message(record(verdict="unscannable", size=None, detail="has 2 hard links"),
                           "quarantine/partner-a/x.com", 68) == "unscannable: has 2 hard links"


@pytest.mark.parametrize(("the_record", "destination", "size"), [
    (record(), "quarantine/partner-a/x (2).com", 68),  # another file of the same name
    (record(), "quarantine/partner-a/x.com", 69),  # another size: not these bytes
    (record(verdict="clean"), "quarantine/partner-a/x.com", 68),
    (record(destination=None), "quarantine/partner-a/x.com", 68),
    ([1, 2], "quarantine/partner-a/x.com", 68),
    (None, "quarantine/partner-a/x.com", 68),
])
def test_a_record_of_another_file_tells_nothing(the_record: object, destination: str,
                                                size: int):
    assert verdict_message(the_record, destination, size) is None


def test_the_message_is_printable_and_short():
    message = verdict_message(record(signature="Evil\x1b[2J\nSig\x9b" + "x" * 500),
                              "quarantine/partner-a/x.com", 68)
    assert message is not None
    assert message.startswith("infected: Evil\\x1b[2J\\nSig\\x9bxxx")
    assert len(message) == MESSAGE_LIMIT and message.endswith("...")
    assert verdict_message(record(signature=""), "quarantine/partner-a/x.com", 68) == \
        "infected: no detail"
