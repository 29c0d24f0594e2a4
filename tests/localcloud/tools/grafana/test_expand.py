"""Grafana's query expansion rules, checked against the forms Grafana itself produces (expected strings are
written out by hand from Grafana's macro engine, template service and rangeutil, never computed by the code
under test)."""

from datetime import UTC, datetime, timedelta, timezone

import pytest

from localcloud.tools.grafana.dashboards import current_value, custom_options
from localcloud.tools.grafana.expand import (
    ALL,
    Interval,
    TimeRange,
    Variable,
    calculate_interval,
    expand,
    expand_macros,
    go_float,
    interpolate_variables,
    parse_interval,
    rfc3339nano,
    round_interval,
    seconds_to_hms,
)

RANGE = TimeRange(datetime(2018, 4, 12, 18, 0, tzinfo=UTC), datetime(2018, 4, 12, 18, 5, tzinfo=UTC))
FIVE_MINUTES = Interval("5m", 300000)


# ---- server-side macros (pkg/tsdb/grafana-postgresql-datasource/macros.go) ----------------------------------
def test_time_filter_is_between_rfc3339_bounds():
    assert (
        expand_macros("WHERE $__timeFilter(time_column)", RANGE)
        == "WHERE time_column BETWEEN '2018-04-12T18:00:00Z' AND '2018-04-12T18:05:00Z'"
    )


def test_time_from_and_to_are_quoted_utc_literals():
    assert expand_macros("select $__timeFrom(), $__timeTo()", RANGE) == (
        "select '2018-04-12T18:00:00Z', '2018-04-12T18:05:00Z'"
    )


def test_time_group_alias_is_epoch_floor_with_time_alias():
    assert (
        expand_macros("SELECT $__timeGroupAlias(ts, 5m)", RANGE)
        == 'SELECT floor(extract(epoch from ts)/300)*300 AS "time"'
    )


def test_time_group_without_alias_and_quoted_interval_with_spaces():
    assert (
        expand_macros("GROUP BY $__timeGroup(ts , '1h')", RANGE) == "GROUP BY floor(extract(epoch from ts)/3600)*3600"
    )


def test_time_group_followed_by_comma_gets_the_alias_for_pre_5_3_dashboards():
    assert (
        expand_macros("SELECT $__timeGroup(ts,'5m'), value", RANGE)
        == 'SELECT floor(extract(epoch from ts)/300)*300 AS "time", value'
    )


def test_time_group_with_timescaledb_uses_time_bucket_in_seconds_with_millis():
    assert expand_macros("$__timeGroup(ts, 5m)", RANGE, timescaledb=True) == "time_bucket('300.000s',ts)"


def test_time_group_accepts_a_fill_argument_and_rejects_a_bad_one():
    assert expand_macros("$__timeGroup(ts, 1m, NULL)", RANGE) == "floor(extract(epoch from ts)/60)*60"
    assert expand_macros("$__timeGroup(ts, 1m, 0)", RANGE) == "floor(extract(epoch from ts)/60)*60"
    with pytest.raises(ValueError, match="fill"):
        expand_macros("$__timeGroup(ts, 1m, zero)", RANGE)


def test_time_and_epoch_macros():
    assert expand_macros("$__time(t)", RANGE) == 't AS "time"'
    assert expand_macros("$__timeEpoch(t)", RANGE) == 'extract(epoch from t) as "time"'
    assert expand_macros("$__unixEpochFilter(e)", RANGE) == "e >= 1523556000 AND e <= 1523556300"
    assert expand_macros("$__unixEpochFrom() $__unixEpochTo()", RANGE) == "1523556000 1523556300"


def test_unknown_macro_and_missing_column_are_errors():
    with pytest.raises(ValueError, match="unknown macro"):
        expand_macros("$__timeFiltr(ts)", RANGE)
    with pytest.raises(ValueError, match="missing time column"):
        expand_macros("$__timeFilter()", RANGE)


def test_rfc3339nano_drops_trailing_zeros_and_converts_to_utc():
    assert rfc3339nano(datetime(1960, 2, 1, 7, 0, 0, 500000, tzinfo=UTC)) == "1960-02-01T07:00:00.5Z"
    plus_two = datetime(2024, 3, 10, 16, 0, tzinfo=timezone(timedelta(hours=2)))
    assert rfc3339nano(plus_two) == "2024-03-10T14:00:00Z"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(300, "300"), (60, "60"), (0.5, "0.5"), (86400, "86400"), (604800, "604800"), (2592000, "2.592e+06"),
     (1000000, "1e+06"), (0.00001, "1e-05"), (31536000, "3.1536e+07")],
)  # fmt: skip
def test_go_float_matches_go_percent_v(seconds, text):
    assert go_float(seconds) == text


def test_month_interval_is_a_calendar_step_like_go_add_date():
    assert parse_interval("1M", now=datetime(2024, 1, 31, tzinfo=UTC)) == timedelta(days=31)  # to Mar 2 (leap)
    assert parse_interval("1y", now=datetime(2023, 6, 1, tzinfo=UTC)) == timedelta(days=366)
    assert parse_interval("1h30m") == timedelta(minutes=90)
    assert parse_interval("2w") == timedelta(days=14)
    with pytest.raises(ValueError):
        parse_interval("5 minutes")


# ---- template variables (template service + SqlDatasource.interpolateVariable) ----------------------------
DEVICES = ("dev-1", "o'brien")


def variables(**kw) -> dict[str, Variable]:
    return {v.name: v for v in kw.values()}


def test_multi_value_is_a_quoted_literal_list_with_doubled_quotes():
    v = Variable("device", DEVICES, multi=True, include_all=True, options=DEVICES)
    sql = interpolate_variables("device_id IN ($device)", variables(d=v), {})
    assert sql == "device_id IN ('dev-1','o''brien')"


def test_single_value_variable_is_inserted_with_doubled_quotes_only():
    v = Variable("device", "o'brien")
    assert interpolate_variables("id = '$device'", variables(d=v), {}) == "id = 'o''brien'"


def test_single_selection_of_a_multi_variable_is_quoted():
    v = Variable("device", "dev-1", multi=True)
    assert interpolate_variables("IN ($device)", variables(d=v), {}) == "IN ('dev-1')"


def test_all_expands_to_every_option_and_custom_all_value_is_inserted_as_written():
    every = Variable("device", (ALL,), multi=True, include_all=True, options=("a", "b"))
    custom = Variable("fleet", ALL, include_all=True, all_value="%", options=("x",))
    sql = interpolate_variables("$device | ${fleet} | ${fleet:singlequote}", variables(d=every, f=custom), {})
    assert sql == "'a','b' | % | %"


def test_brace_bracket_and_format_forms():
    v = Variable("device", DEVICES, multi=True)
    sql = interpolate_variables(
        "${device} [[device]] ${device:csv} ${device:singlequote} ${device:sqlstring} ${device:pipe}",
        variables(d=v),
        {},
    )
    assert (
        sql
        == "'dev-1','o''brien' 'dev-1','o''brien' dev-1,o'brien 'dev-1','o\\'brien' 'dev-1','o''brien' dev-1|o'brien"
    )


def test_unknown_names_are_left_for_the_macro_engine_and_unknown_formats_fail():
    assert interpolate_variables("$__timeFilter(ts) AND $nope", {}, {}) == "$__timeFilter(ts) AND $nope"
    v = Variable("device", "a")
    with pytest.raises(ValueError, match="format"):
        interpolate_variables("${device:lucene}", variables(d=v), {})


def test_expand_runs_variables_then_macros_with_interval_builtins():
    v = Variable("device", ("a",), multi=True)
    sql = expand(
        "SELECT $__timeGroupAlias(ts, $__interval), $__interval_ms WHERE $__timeFilter(ts) AND d IN ($device)",
        RANGE,
        FIVE_MINUTES,
        variables(d=v),
    )
    assert sql == (
        'SELECT floor(extract(epoch from ts)/300)*300 AS "time", 300000 '
        "WHERE ts BETWEEN '2018-04-12T18:00:00Z' AND '2018-04-12T18:05:00Z' AND d IN ('a')"
    )


def test_from_and_to_builtins_are_epoch_milliseconds():
    assert expand("$__from $__to", RANGE, FIVE_MINUTES) == "1523556000000 1523556300000"


# ---- the interval (rangeutil.calculateInterval) -----------------------------------------------------------
def test_round_interval_ladder():
    assert round_interval(86400) == 60000  # 24 h / 1000 points = 86.4 s -> 1m
    assert round_interval(604800) == 600000  # 7 d / 1000 points = 604.8 s -> 10m
    assert round_interval(3024000) == 3600000  # 7 d / 200 points -> 1h
    assert round_interval(5) == 1


def test_seconds_to_hms_keeps_the_largest_unit():
    assert [seconds_to_hms(s) for s in (300, 3600, 90, 86400, 604800, 0.5)] == ["5m", "1h", "1m", "1d", "7d", "500ms"]


def test_interval_respects_the_minimum():
    day = TimeRange(RANGE.start, RANGE.start + timedelta(days=1))
    assert calculate_interval(day, 1000, "1m") == Interval("1m", 60000)
    assert calculate_interval(day, 1000, "5m") == Interval("5m", 300000)
    week = TimeRange(RANGE.start, RANGE.start + timedelta(days=7))
    assert calculate_interval(week, 200, "5m") == Interval("1h", 3600000)


# ---- variable pickers ------------------------------------------------------------------------------------
def test_custom_variable_options_take_the_value_after_spaced_colon():
    assert custom_options("hide : false,show : true") == ["false", "true"]
    assert custom_options(r"a\,b,c") == ["a,b", "c"]


def test_current_value_falls_back_to_first_option_and_keeps_all():
    multi = {"multi": True, "includeAll": True, "current": {"value": ["$__all"]}}
    assert current_value(multi, ["a", "b"], None) == (ALL,)
    assert current_value(multi, ["a", "b"], ("b", "zz")) == ("b",)
    single = {"multi": False, "current": {}}
    assert current_value(single, ["a", "b"], None) == "a"
