"""Stream ids, URL limits and log escaping (issue 13, item 3)."""

import io
import logging

import pytest

from detector.identifiers import (
    MAX_URL_CHARS,
    escape_text,
    is_valid_stream_id,
    shown,
    stream_id_from_name,
    url_problem,
)
from detector.logs import LOG_FORMAT, EscapingFormatter


@pytest.mark.parametrize("value, valid", [
    ("cam1", True), ("a", True), ("x" * 64, True), ("front-door:2.hd_1", True), ("_x", True),
    ("", False), ("x" * 65, False), (".", False), ("..", False), ("../../etc", False),
    (".hidden", False), ("a\nb", False), ("a b", False), ("a/b", False), ("ü", False),
    (None, False), (5, False), (["a"], False),
])
def test_stream_id_pattern(value, valid):
    assert is_valid_stream_id(value) is valid


@pytest.mark.parametrize("name, expected", [
    ("driving", "driving"), ("my clip (1)", "my_clip__1_"), ("..x", "x"), ("", "stream"),
    ("y" * 100, "y" * 64), ("a\nb", "a_b"),
])
def test_stream_id_from_name_is_always_valid(name, expected):
    assert stream_id_from_name(name) == expected
    assert is_valid_stream_id(stream_id_from_name(name))


@pytest.mark.parametrize("url, problem", [
    ("clip.mp4", None), ("rtsp://u:p@cam/x", None), ("u" * MAX_URL_CHARS, None),
    ("u" * (MAX_URL_CHARS + 1), "at most"), ("", "non-empty"), (None, "non-empty"),
    ("a\nb", "control"), ("a\x00b", "control"), ("rtsp://cam/\r", "control"),
])
def test_url_problem(url, problem):
    found = url_problem(url)
    assert (found is None) if problem is None else (problem in found)


def test_url_problem_never_repeats_the_url():
    assert "secret" not in url_problem("rtsp://u:secret@cam/\n")


@pytest.mark.parametrize("text, expected", [
    ("plain", "plain"), ("a\nb", "a\\nb"), ("a\r\nFAKE", "a\\r\\nFAKE"), ("\x1b[31m", "\\x1b[31m"),
    ("line\u2028sep", "line\\u2028sep"),
])
def test_escape_text(text, expected):
    assert escape_text(text) == expected


def test_escape_text_bounds_length_and_says_so():
    assert escape_text("x" * 50, 10) == "x" * 10 + "… (40 more characters)"


def test_shown_survives_values_repr_cannot_print():
    assert shown(10 ** 6000) == "<int that cannot be shown>"  # > 4300 digits: repr raises


def test_a_newline_in_a_logged_value_cannot_forge_a_line():
    # given a logger that writes with the service's formatter
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(EscapingFormatter(LOG_FORMAT))
    logger = logging.getLogger("test.forge")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        # when a stream id carries a newline and a fake log record
        logger.warning("stream %s failed", "x\n2026-01-01 00:00:00 INFO app: all is well")
        # then it stays on one line
        assert stream.getvalue().count("\n") == 1
        assert "x\\n2026" in stream.getvalue()
    finally:
        logger.removeHandler(handler)


@pytest.mark.parametrize("ids, message", [
    (["../../etc"], "--id: stream id must be"), (["a\nb"], "--id: stream id must be"),
    (["x" * 65], "--id: stream id must be"),
])
def test_replay_ids_outside_the_pattern_are_one_sentence(ids, message):
    from app.replay import plan_items
    from detector.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        plan_items(["clip.mp4"], ids)


def test_default_replay_ids_of_odd_file_names_are_valid_and_unique():
    from app.replay import plan_items

    items = plan_items(["my clip (1).mp4", "a/" + "z" * 80 + ".mp4", "b/" + "z" * 80 + ".mp4"], None)
    assert [i.stream_id for i in items] == ["my_clip__1_", "z" * 64, "z" * 58 + "-2"]
    assert all(is_valid_stream_id(i.stream_id) for i in items)


@pytest.mark.parametrize("raw, message", [
    ({"id": "../x", "url": "a.mp4"}, "streams\\[0\\].id: stream id must be"),
    ({"id": "cam", "url": "rtsp://cam/" + "x" * 5000}, "streams\\[0\\].url must be at most 4096"),
    ({"id": "cam", "url": "a\nb.mp4"}, "streams\\[0\\].url must not contain control"),
])
def test_config_streams_are_checked(raw, message):
    from detector.config import config_from_dict
    from detector.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        config_from_dict({"streams": [raw]})
