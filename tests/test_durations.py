"""Durations as typed (`--time-budget 30m`): one parser, one ParamType, one-line errors."""
from __future__ import annotations

import pytest

from condition.cli import main
from condition.durations import format_duration, parse_duration
from condition.errors import ConfigError


@pytest.mark.parametrize("text, seconds", [("30m", 1800), ("1h30m", 5400), ("90s", 90), ("90", 90), ("1800", 1800),
                                           ("1.5h", 5400), ("2h", 7200), ("1h5s", 3605), (" 30M ", 1800), ("0.5", 0.5)])
def test_durations_people_type(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "h", "30x", "m30", "1m30h", "30 minutes", "1:30"])
def test_what_is_not_a_duration_says_the_syntax(text):
    with pytest.raises(ConfigError, match="not a duration .*30m, 1h30m"):
        parse_duration(text, "--time-budget")


@pytest.mark.parametrize("text", ["0", "-5", "0s", "nan", "inf"])
def test_a_duration_must_be_positive(text):
    with pytest.raises(ConfigError, match="positive"):
        parse_duration(text)


def test_format_round_trips():
    assert [format_duration(parse_duration(t)) for t in ("1h30m", "90s", "30m", "7200")] == ["1h30m", "1m30s", "30m", "2h"]


def test_search_refuses_a_bad_budget_in_one_line(capsys):
    assert main(["search", "--time-budget", "30x"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["condition: error: --time-budget='30x': not a duration (seconds, or hours/minutes/seconds such as 90s, 30m, 1h30m)"]


def test_search_takes_the_typed_forms():
    from condition.cli import cli

    command = cli.get_command(None, "search")
    for text, seconds in (("30m", 1800.0), ("1h30m", 5400.0), ("90s", 90.0), ("45", 45.0)):
        assert command.make_context("search", ["--time-budget", text]).params["time_budget"] == seconds
