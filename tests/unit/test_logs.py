"""ssftp.logs: what the text console shows of names partners chose."""

from __future__ import annotations

import io
import json
import logging
import logging.config

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


def test_prefects_console_config_builds_a_plain_handler_writing_one_line_per_record():
    """Prefect's logging config, with its console handler's class and formatter replaced as
    ``ssftp up`` does on a console that is not a terminal: built with Prefect's arguments (the
    styles), it writes each record as one JSON line, never through rich (whose markup would
    eat ``[bold]`` in a partner's file name)."""
    stream = io.StringIO()
    logging.config.dictConfig({
        "version": 1, "disable_existing_loggers": False,
        "formatters": {"json": {"class": "ssftp.logs.RunRecordFormatter", "format": "default"}},
        "handlers": {"console": {"class": "ssftp.logs.RunRecordHandler", "level": 0,
                                 "formatter": "json", "stream": stream,
                                 "styles": {"log.info_level": "cyan"}}},
        "loggers": {"test.prefect.console": {"handlers": ["console"], "level": "INFO",
                                             "propagate": False}}})
    logger = logging.getLogger("test.prefect.console")
    logger.info("%s", "in/[bold]a.txt: clean (OK)\nin/b.txt: clean (OK)")
    [line] = stream.getvalue().splitlines()
    assert json.loads(line)["event"] == "in/[bold]a.txt: clean (OK)\nin/b.txt: clean (OK)"
    for handler in logger.handlers:
        handler.close()
