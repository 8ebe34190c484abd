"""CronSchedule: five-field cron evaluated in an IANA time zone."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from multinic_ctrl.controller.schedule import CronSchedule, ScheduleError

UTC = dt.UTC
BERLIN = ZoneInfo("Europe/Berlin")


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, second, tzinfo=UTC)


# 2026-01-09 is a Friday, 2026-01-10 a Saturday, 2026-01-11 a Sunday.
@pytest.mark.parametrize(
    ("expr", "after", "expected"),
    [
        # every minute; strictly after, seconds dropped
        ("* * * * *", utc(2026, 1, 10, 10, 0), utc(2026, 1, 10, 10, 1)),
        ("* * * * *", utc(2026, 1, 10, 10, 0, 30), utc(2026, 1, 10, 10, 1)),
        ("* * * * *", utc(2026, 12, 31, 23, 59, 59), utc(2027, 1, 1, 0, 0)),
        # steps
        ("*/15 * * * *", utc(2026, 1, 10, 10, 7), utc(2026, 1, 10, 10, 15)),
        ("*/15 * * * *", utc(2026, 1, 10, 10, 15), utc(2026, 1, 10, 10, 30)),
        ("*/15 * * * *", utc(2026, 1, 10, 10, 45), utc(2026, 1, 10, 11, 0)),
        ("5/20 * * * *", utc(2026, 1, 10, 10, 6), utc(2026, 1, 10, 10, 25)),
        ("5/20 * * * *", utc(2026, 1, 10, 10, 45), utc(2026, 1, 10, 11, 5)),
        ("0 */6 * * *", utc(2026, 1, 10, 13, 0), utc(2026, 1, 10, 18, 0)),
        # ranges, ranges with steps
        ("5-10 * * * *", utc(2026, 1, 10, 10, 7), utc(2026, 1, 10, 10, 8)),
        ("5-10 * * * *", utc(2026, 1, 10, 10, 10), utc(2026, 1, 10, 11, 5)),
        ("5-10/2 * * * *", utc(2026, 1, 10, 10, 5), utc(2026, 1, 10, 10, 7)),
        ("5-10/2 * * * *", utc(2026, 1, 10, 10, 9), utc(2026, 1, 10, 11, 5)),
        ("0 9-17/4 * * *", utc(2026, 1, 10, 9, 0), utc(2026, 1, 10, 13, 0)),
        ("0 9-17/4 * * *", utc(2026, 1, 10, 17, 0), utc(2026, 1, 11, 9, 0)),
        # lists, mixed lists
        ("0,30 * * * *", utc(2026, 1, 10, 10, 0), utc(2026, 1, 10, 10, 30)),
        ("0,30 * * * *", utc(2026, 1, 10, 10, 30), utc(2026, 1, 10, 11, 0)),
        ("1,2,40-42 * * * *", utc(2026, 1, 10, 10, 2), utc(2026, 1, 10, 10, 40)),
        ("0 8,20 * * *", utc(2026, 1, 10, 8, 0), utc(2026, 1, 10, 20, 0)),
        # day of week: 0 and 7 are both Sunday
        ("0 0 * * 0", utc(2026, 1, 10, 12, 0), utc(2026, 1, 11, 0, 0)),
        ("0 0 * * 7", utc(2026, 1, 10, 12, 0), utc(2026, 1, 11, 0, 0)),
        ("0 0 * * 5-7", utc(2026, 1, 10, 12, 0), utc(2026, 1, 11, 0, 0)),
        ("0 0 * * 1-5", utc(2026, 1, 9, 12, 0), utc(2026, 1, 12, 0, 0)),
        ("0 0 * * 6", utc(2026, 1, 10, 0, 0), utc(2026, 1, 17, 0, 0)),
        ("0 0 * * 1,3", utc(2026, 1, 12, 0, 0), utc(2026, 1, 14, 0, 0)),
        # day of month alone / day of week alone: only that restriction applies
        ("0 0 13 * *", utc(2026, 1, 10, 0, 0), utc(2026, 1, 13, 0, 0)),
        ("0 0 * * 5", utc(2026, 1, 10, 0, 0), utc(2026, 1, 16, 0, 0)),
        # both restricted: either matches (Vixie cron OR rule); the 13th is a Tuesday, the 16th a Friday
        ("0 0 13 * 5", utc(2026, 1, 10, 0, 0), utc(2026, 1, 13, 0, 0)),
        ("0 0 13 * 5", utc(2026, 1, 13, 0, 0), utc(2026, 1, 16, 0, 0)),
        ("0 0 13 * 5", utc(2026, 1, 16, 0, 0), utc(2026, 1, 23, 0, 0)),
        ("0 0 1,15 * 1", utc(2026, 1, 10, 0, 0), utc(2026, 1, 12, 0, 0)),
        ("0 0 1,15 * 1", utc(2026, 1, 12, 0, 0), utc(2026, 1, 15, 0, 0)),
        # month and year rollover
        ("0 0 1 * *", utc(2026, 1, 15, 0, 0), utc(2026, 2, 1, 0, 0)),
        ("0 0 1 * *", utc(2026, 12, 15, 0, 0), utc(2027, 1, 1, 0, 0)),
        ("0 0 31 * *", utc(2026, 1, 31, 0, 0), utc(2026, 3, 31, 0, 0)),
        ("0 0 30 * *", utc(2026, 1, 31, 0, 0), utc(2026, 3, 30, 0, 0)),
        ("0 0 29 2 *", utc(2026, 3, 1, 0, 0), utc(2028, 2, 29, 0, 0)),
        ("0 0 1 6 *", utc(2026, 7, 1, 0, 0), utc(2027, 6, 1, 0, 0)),
        ("0 12 * 2 *", utc(2026, 1, 15, 0, 0), utc(2026, 2, 1, 12, 0)),
        ("0 0 * 1,7 *", utc(2026, 1, 31, 0, 0), utc(2026, 7, 1, 0, 0)),
        ("59 23 31 12 *", utc(2026, 1, 1, 0, 0), utc(2026, 12, 31, 23, 59)),
    ],
)
def test_next_after_utc(expr: str, after: dt.datetime, expected: dt.datetime) -> None:
    assert CronSchedule.parse(expr, "UTC").next_after(after) == expected


def test_result_is_utc_and_minute_aligned_even_for_other_zone_input() -> None:
    moment = dt.datetime(2026, 1, 10, 11, 7, 42, 123456, tzinfo=BERLIN)  # 10:07:42 UTC
    result = CronSchedule.parse("*/15 * * * *", "UTC").next_after(moment)
    assert result == utc(2026, 1, 10, 10, 15)
    assert result.utcoffset() == dt.timedelta(0)
    assert (result.second, result.microsecond) == (0, 0)


def test_default_zone_is_utc() -> None:
    assert CronSchedule.parse("0 9 * * *").next_after(utc(2026, 1, 10, 0, 0)) == utc(2026, 1, 10, 9, 0)


@pytest.mark.parametrize(
    ("zone", "after", "expected"),
    [
        ("Europe/Berlin", utc(2026, 1, 10, 0, 0), utc(2026, 1, 10, 8, 0)),  # CET, UTC+1
        ("Europe/Berlin", utc(2026, 7, 10, 0, 0), utc(2026, 7, 10, 7, 0)),  # CEST, UTC+2
        ("America/New_York", utc(2026, 1, 10, 0, 0), utc(2026, 1, 10, 14, 0)),  # EST, UTC-5
        ("Asia/Kolkata", utc(2026, 1, 10, 0, 0), utc(2026, 1, 10, 3, 30)),  # UTC+5:30
        ("Asia/Tokyo", utc(2026, 1, 10, 0, 0), utc(2026, 1, 11, 0, 0)),  # already 09:00 local: next day
    ],
)
def test_evaluated_in_the_time_zone(zone: str, after: dt.datetime, expected: dt.datetime) -> None:
    assert CronSchedule.parse("0 9 * * *", zone).next_after(after) == expected


def test_day_of_week_is_judged_in_local_time() -> None:
    # Saturday 23:30 UTC is already Sunday 08:30 in Tokyo
    schedule = CronSchedule.parse("0 9 * * 0", "Asia/Tokyo")
    assert schedule.next_after(utc(2026, 1, 10, 23, 30)) == utc(2026, 1, 11, 0, 0)


# ---------------------------------------------------------------- DST (Europe/Berlin: 2026-03-29 02:00 → 03:00,
# 2026-10-25 03:00 → 02:00)


def test_daily_schedule_follows_spring_forward() -> None:
    schedule = CronSchedule.parse("0 9 * * *", "Europe/Berlin")
    assert schedule.next_after(utc(2026, 3, 28, 9, 0)) == utc(2026, 3, 29, 7, 0)  # 09:00 CEST
    assert schedule.next_after(utc(2026, 3, 27, 9, 0)) == utc(2026, 3, 28, 8, 0)  # 09:00 CET


def test_daily_schedule_follows_fall_back() -> None:
    schedule = CronSchedule.parse("0 9 * * *", "Europe/Berlin")
    assert schedule.next_after(utc(2026, 10, 24, 8, 0)) == utc(2026, 10, 25, 8, 0)  # 09:00 CET
    assert schedule.next_after(utc(2026, 10, 23, 8, 0)) == utc(2026, 10, 24, 7, 0)  # 09:00 CEST


def test_a_time_inside_the_spring_gap_still_runs_once_that_day() -> None:
    """02:30 does not exist in Berlin on 2026-03-29: the run happens right after the jump, not a day late."""
    schedule = CronSchedule.parse("30 2 * * *", "Europe/Berlin")
    moment = utc(2026, 3, 28, 23, 0)
    first = schedule.next_after(moment)
    assert first > moment
    assert utc(2026, 3, 29, 1, 0) <= first <= utc(2026, 3, 29, 1, 30)  # between 03:00 and 03:30 CEST
    assert first.astimezone(BERLIN).date() == dt.date(2026, 3, 29)
    second = schedule.next_after(first)
    assert second == utc(2026, 3, 30, 0, 30)  # 02:30 CEST the next day


def test_a_time_inside_the_fall_back_overlap_runs_once() -> None:
    """02:30 happens twice in Berlin on 2026-10-25 (CEST, then CET); a daily job runs once."""
    schedule = CronSchedule.parse("30 2 * * *", "Europe/Berlin")
    first = schedule.next_after(utc(2026, 10, 24, 23, 0))
    assert first in (utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 1, 30))
    assert schedule.next_after(first) == utc(2026, 10, 26, 1, 30)


def test_hourly_schedule_across_the_spring_gap() -> None:
    schedule = CronSchedule.parse("0 * * * *", "Europe/Berlin")
    assert schedule.next_after(utc(2026, 3, 29, 0, 30)) == utc(2026, 3, 29, 1, 0)  # 03:00 CEST
    assert schedule.next_after(utc(2026, 3, 29, 1, 0)) == utc(2026, 3, 29, 2, 0)  # 04:00 CEST


@pytest.mark.parametrize("expr", ["*/5 * * * *", "0 * * * *", "30 2 * * *", "* * * * *"])
def test_strictly_after_across_spring_forward(expr: str) -> None:
    schedule = CronSchedule.parse(expr, "Europe/Berlin")
    moment = utc(2026, 3, 28, 23, 0)
    while moment < utc(2026, 3, 29, 3, 0):
        result = schedule.next_after(moment)
        assert result > moment, (expr, moment, result)
        assert result - moment <= dt.timedelta(days=1), (expr, moment, result)
        moment += dt.timedelta(minutes=7)


# ---------------------------------------------------------------- oracle comparison (zones without DST)


def _field_matches(value: int, spec: str, low: int, high: int) -> bool:
    for part in spec.split(","):
        step = 1
        if "/" in part:
            part, step_text = part.split("/")
            step = int(step_text)
        if part == "*":
            start, end = low, high
        elif "-" in part:
            start, end = (int(x) for x in part.split("-"))
        else:
            start = int(part)
            end = high if step > 1 else start
        if start <= value <= end and (value - start) % step == 0:
            return True
    return False


def _oracle_matches(expr: str, local: dt.datetime) -> bool:
    minute, hour, dom, month, dow = expr.split()
    weekday = local.isoweekday() % 7
    dom_ok = _field_matches(local.day, dom, 1, 31)
    dow_ok = _field_matches(weekday, dow, 0, 7) or (weekday == 0 and _field_matches(7, dow, 0, 7))
    day_ok = (dom_ok or dow_ok) if dom != "*" and dow != "*" else (dom_ok and dow_ok)
    return (
        _field_matches(local.minute, minute, 0, 59)
        and _field_matches(local.hour, hour, 0, 23)
        and _field_matches(local.month, month, 1, 12)
        and day_ok
    )


ORACLE_EXPRESSIONS = [
    "*/7 * * * *",
    "5-50/9 */3 * * *",
    "0,15,45 8-18 * * 1-5",
    "30 4 1,15 * *",
    "0 12 * * 0",
    "0 12 * * 7",
    "10 0 13 * 5",
    "0 0 * 2,3 *",
    "*/20 1,13 10-20 * 6,0",
]


@settings(max_examples=60, deadline=None)
@given(
    expr=st.sampled_from(ORACLE_EXPRESSIONS),
    zone=st.sampled_from(["UTC", "Asia/Kolkata", "Asia/Tokyo", "America/Phoenix"]),
    moment=st.datetimes(min_value=dt.datetime(2024, 1, 1), max_value=dt.datetime(2030, 1, 1)),
)
def test_matches_a_brute_force_oracle(expr: str, zone: str, moment: dt.datetime) -> None:
    start = moment.replace(tzinfo=UTC)
    result = CronSchedule.parse(expr, zone).next_after(start)
    assert result > start
    assert (result.second, result.microsecond) == (0, 0)
    tz = ZoneInfo(zone)
    assert _oracle_matches(expr, result.astimezone(tz)), result
    # and no earlier matching minute was skipped
    probe = start.replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
    steps = 0
    while probe < result and steps < 100_000:
        assert not _oracle_matches(expr, probe.astimezone(tz)), (expr, zone, start, probe, result)
        probe += dt.timedelta(minutes=1)
        steps += 1


# ---------------------------------------------------------------- parsing and errors


def test_parse_keeps_expression_zone_and_restriction_flags() -> None:
    schedule = CronSchedule.parse("0 9 13 * 5", "Europe/Berlin")
    assert schedule.expression == "0 9 13 * 5"
    assert schedule.zone == BERLIN
    assert schedule.dom_restricted and schedule.dow_restricted
    assert schedule.fields[0] == frozenset({0})
    assert schedule.fields[4] == frozenset({5})
    plain = CronSchedule.parse("*/30 * * * *")
    assert not plain.dom_restricted and not plain.dow_restricted
    assert plain.fields[0] == frozenset({0, 30})


def test_seven_is_normalised_to_sunday() -> None:
    assert CronSchedule.parse("0 0 * * 7").fields[4] == frozenset({0})
    assert CronSchedule.parse("0 0 * * *").fields[4] == frozenset(range(7))


def test_extra_whitespace_is_tolerated() -> None:
    assert CronSchedule.parse("  0   9 * *  * ").fields[1] == frozenset({9})


@pytest.mark.parametrize(
    ("expr", "fragment"),
    [
        ("", "5 fields"),
        ("* * * *", "5 fields"),
        ("* * * * * *", "5 fields"),
        ("60 * * * *", "minute: '60' is outside 0-59"),
        ("-1 * * * *", "minute: bad range"),
        ("* 24 * * *", "hour: '24' is outside 0-23"),
        ("* * 0 * *", "day-of-month: '0' is outside 1-31"),
        ("* * 32 * *", "day-of-month: '32' is outside 1-31"),
        ("* * * 0 *", "month: '0' is outside 1-12"),
        ("* * * 13 *", "month: '13' is outside 1-12"),
        ("* * * * 8", "day-of-week: '8' is outside 0-7"),
        ("10-5 * * * *", "minute: '10-5' is outside"),
        ("5-70 * * * *", "minute: '5-70' is outside"),
        ("*/0 * * * *", "minute: bad step '0'"),
        ("*/x * * * *", "minute: bad step 'x'"),
        ("*/ * * * *", "minute: bad step ''"),
        ("a * * * *", "minute: bad value 'a'"),
        ("1,,2 * * * *", "minute: bad value ''"),
        ("1-x * * * *", "minute: bad range '1-x'"),
        ("* * * JAN *", "month: bad value 'JAN'"),
        ("* * * * MON", "day-of-week: bad value 'MON'"),
        ("@hourly", "5 fields"),
    ],
)
def test_parse_errors(expr: str, fragment: str) -> None:
    with pytest.raises(ScheduleError) as info:
        CronSchedule.parse(expr, "UTC")
    assert fragment in str(info.value)


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "", "Europe/", "../etc/passwd", "utc+1"])
def test_unknown_time_zone(zone: str) -> None:
    with pytest.raises(ScheduleError, match="unknown time zone"):
        CronSchedule.parse("* * * * *", zone)


def test_schedule_error_is_a_value_error() -> None:
    assert issubclass(ScheduleError, ValueError)
