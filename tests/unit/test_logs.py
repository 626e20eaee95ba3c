"""ssftp.logs: what the text console shows of names partners chose."""

from __future__ import annotations

import json
import logging

from ssftp.logs import APP, RunRecordFormatter, TextFormatter


def test_the_text_console_escapes_what_a_terminal_would_act_on():
    """Fields carry names partners chose; one that is not UTF-8 (a surrogate from the file
    system) is shown as its byte, never raises. On main ESC, BEL and C1 reached the console."""
    record = logging.getLogger(APP).makeRecord(
        APP, logging.WARNING, __file__, 0, "refused", (), None,
        extra={"fields": {"path": "in/\x1b]0;PWNED\x07\x9b-\udcff.txt", "user": "u"}})
    line = TextFormatter().format(record)
    assert line.endswith("warning  refused  path=in/\\x1b]0;PWNED\\x07\\x9b-\\xff.txt user=u")
    assert all(char.isprintable() for char in line)


def test_prefects_records_are_ssftps_json_lines_naming_the_run():
    """Prefect's log records on a console that is not a terminal: ssftp's few fields and the
    run's name, not every attribute of the record (Prefect's own JSON, ~1.5 KB a line)."""
    record = logging.LogRecord("prefect.flow_runs", logging.INFO, __file__, 1,
                               "Finished in state %s", ("Completed()",), None)
    record.flow_run_name = "scan 1 clean from acme"
    record.flow_run_id = "d50e8e5e-f3e8-4881-9092-0500094b0dbe"
    line = json.loads(RunRecordFormatter("default", None, "%").format(record))
    assert set(line) == {"time", "level", "log", "event", "flow_run"}
    assert line["event"] == "Finished in state Completed()"
    assert line["flow_run"] == "scan 1 clean from acme"
    assert line["log"] == "prefect.flow_runs" and line["level"] == "info"
