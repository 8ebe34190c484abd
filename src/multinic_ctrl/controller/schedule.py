"""A small five-field cron evaluator (minute hour day-of-month month day-of-week) in an IANA time zone.

Supports `*`, numbers, ranges `a-b`, lists `a,b` and steps `*/n`, `a-b/n`; day-of-week 0-7 with 0 and 7 both
Sunday. As in Vixie cron, when both day-of-month and day-of-week are restricted a day matches if either does.
Evaluation walks minutes in the zone's local time, so a schedule like `0 2 * * *` follows DST changes.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
_FIELD_NAMES = ("minute", "hour", "day-of-month", "month", "day-of-week")


class ScheduleError(ValueError):
    pass


def _parse_field(text: str, index: int) -> frozenset[int]:
    low, high = _RANGES[index]
    values: set[int] = set()
    for part in text.split(","):
        step = 1
        if "/" in part:
            part, step_text = part.split("/", 1)
            if not step_text.isdigit() or int(step_text) == 0:
                raise ScheduleError(f"{_FIELD_NAMES[index]}: bad step {step_text!r}")
            step = int(step_text)
        if part == "*":
            start, end = low, high
        elif "-" in part:
            a, b = part.split("-", 1)
            if not (a.isdigit() and b.isdigit()):
                raise ScheduleError(f"{_FIELD_NAMES[index]}: bad range {part!r}")
            start, end = int(a), int(b)
        elif part.isdigit():
            start = end = int(part)
            if step > 1:
                end = high
        else:
            raise ScheduleError(f"{_FIELD_NAMES[index]}: bad value {part!r}")
        if not (low <= start <= high and low <= end <= high and start <= end):
            raise ScheduleError(f"{_FIELD_NAMES[index]}: {part!r} is outside {low}-{high}")
        values.update(range(start, end + 1, step))
    if index == 4 and 7 in values:
        values = (values - {7}) | {0}
    return frozenset(values)


@dataclass(frozen=True)
class CronSchedule:
    expression: str
    zone: ZoneInfo
    fields: tuple[frozenset[int], ...]
    dom_restricted: bool
    dow_restricted: bool

    @classmethod
    def parse(cls, expression: str, timezone: str = "UTC") -> CronSchedule:
        parts = expression.split()
        if len(parts) != 5:
            raise ScheduleError(f"{expression!r} must have 5 fields (minute hour day-of-month month day-of-week)")
        try:
            zone = ZoneInfo(timezone)
        except Exception:
            raise ScheduleError(f"unknown time zone {timezone!r}") from None
        fields = tuple(_parse_field(p, i) for i, p in enumerate(parts))
        return cls(expression, zone, fields, parts[2] != "*", parts[4] != "*")

    def _day_matches(self, local: dt.datetime) -> bool:
        dom = local.day in self.fields[2]
        dow = (local.isoweekday() % 7) in self.fields[4]
        if self.dom_restricted and self.dow_restricted:
            return dom or dow
        return dom and dow

    def _wall_matches(self, wall: dt.datetime) -> bool:
        minutes, hours, _, months, _ = self.fields
        return wall.month in months and self._day_matches(wall) and wall.hour in hours and wall.minute in minutes

    def next_after(self, moment: dt.datetime) -> dt.datetime:
        """The first matching minute strictly after `moment` (aware), returned in UTC.

        The walk advances in UTC (which never repeats or skips) and reads fields in local time, so the result
        is always after `moment`. Daylight-saving rules follow cron's: a job with fixed hours runs once when
        the clock falls back (the second pass through the repeated hour is skipped) and a job whose time falls
        into the spring-forward gap runs right after the jump; wildcard-hour jobs run in both passes. A
        schedule with no match within five years (e.g. 31 February) raises ScheduleError.
        """
        minutes, hours, _, months, _ = self.fields
        fixed_hours = len(hours) < 24
        t = moment.astimezone(dt.UTC).replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
        horizon = t + dt.timedelta(days=5 * 366)
        while t <= horizon:
            local = t.astimezone(self.zone)
            wall = local.replace(tzinfo=None)
            previous = (t - dt.timedelta(minutes=1)).astimezone(self.zone).replace(tzinfo=None)
            if wall - previous > dt.timedelta(minutes=1) and any(
                self._wall_matches(previous + dt.timedelta(minutes=k))
                for k in range(1, int((wall - previous).total_seconds() // 60))
            ):
                return t  # a matching wall time was skipped by a spring-forward jump: run now
            if local.month not in months:
                first = (wall.replace(day=1, hour=0, minute=0) + dt.timedelta(days=32)).replace(day=1)
                t = self._forward(t, first)
            elif not self._day_matches(local):
                t = self._forward(t, wall.replace(hour=0, minute=0) + dt.timedelta(days=1))
            elif local.hour not in hours:
                t += dt.timedelta(minutes=60 - local.minute)
            elif local.minute not in minutes:
                t += dt.timedelta(minutes=1)
            elif fixed_hours and local.fold == 1 and local.replace(fold=0).utcoffset() != local.utcoffset():
                t += dt.timedelta(minutes=1)  # second pass through a repeated hour
            else:
                return t
        raise ScheduleError(f"{self.expression!r} never matches")

    def _forward(self, current: dt.datetime, local_wall: dt.datetime) -> dt.datetime:
        """UTC instant of a local wall-clock time, never earlier than one minute after `current`."""
        target = local_wall.replace(tzinfo=self.zone).astimezone(dt.UTC)
        return max(target, current + dt.timedelta(minutes=1))
