"""server.compat: the refusal notices real clients show on stderr, rate-limited and printable."""

from __future__ import annotations

from server.compat import RefusalNotices


def test_refusal_notices_are_rate_limited() -> None:
    """A client looping on a refusal gets a burst of reasons, then one per interval."""
    clock = [1000.0]
    lines: list[bytes] = []
    notices = RefusalNotices(lines.append, burst=3, interval=10.0, clock=lambda: clock[0])
    for _ in range(50):
        notices.show("open", "/x", "no")
    assert len(lines) == 3
    clock[0] += 10.0
    for _ in range(50):
        notices.show("open", "/x", "no")
    assert len(lines) == 4
    assert lines[0] == b"ssftp: open /x refused: no\n"


def test_refusal_notices_keep_control_characters_out_of_the_terminal() -> None:
    """C0, DEL and C1 (0x9b is CSI on some terminals: on main it went through as it was) are
    shown escaped, and a name that is not UTF-8 too (on main it raised UnicodeEncodeError)."""
    lines: list[bytes] = []
    odd = b"\xff".decode("utf-8", "surrogateescape")
    RefusalNotices(lines.append).show("open", f"/a\x1b[2Jb\nc\x7f\x9bd{odd}", "no")
    assert lines == [b"ssftp: open /a\\x1b[2Jb\\nc\\x7f\\x9bd\\xff refused: no\n"]
