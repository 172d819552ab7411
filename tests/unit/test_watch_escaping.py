"""`watch` shows what Redis holds as written: markup and control codes in a record are text."""

import io

from rich.console import Console

from consumers.watch import StreamRow, StreamTable
from detector.records import StatusRecord


def test_markup_and_escape_codes_from_redis_are_not_interpreted():
    # given a record someone with Redis access wrote with rich markup and a terminal escape
    table = StreamTable()
    row = StreamRow("[link=http://evil]cam[/link]")
    row.apply_status(StatusRecord.from_redis(
        {"status": "running\x1b[2J", "verdict": "[blink]REAL[/blink]", "frames_scored": 1,
         "error": "[red]x\x1b]0;title\x07"}, row.stream_id))
    table.rows[row.stream_id] = row
    # when the table is printed
    out = io.StringIO()
    Console(file=out, width=200, force_terminal=False).print(table.render("streams"))
    text = out.getvalue()
    # then the markup is shown literally and no escape code reaches the terminal
    assert "[link=http://evil]cam[/link]" in text
    assert "[blink]REAL[/blink]" in text
    assert "\x1b" not in text and "\x07" not in text
