"""CronJob schedule syntax check (pure): the subset of the standard five-field grammar a CronJob accepts.

Invariants:

* **accept only what the CronJob controller runs** - five single-space-separated fields (minute hour
  day-of-month month day-of-week) made of `*`, `?` (day fields only), numbers, three-letter month/day names,
  ranges `a-b`, steps `/n` and lists, every value inside its field's range; or one of the predefined
  `@yearly @annually @monthly @weekly @daily @midnight @hourly`;
* **refuse what it would misread** - `TZ=`/`CRON_TZ=` prefixes (the apiserver rejects them; the zone goes to
  `spec.timeZone`), `@every` and anything with other characters, so a schedule can carry nothing but a schedule.

Only syntax is checked here; the CronJob controller evaluates the schedule. (The controller's own evaluator for
`reconcileTrigger.schedule` lives in `multinic_ctrl.controller.schedule`, which this package may not import.)
"""

from __future__ import annotations

import re

DESCRIPTORS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
# Shape only; `check` enforces ranges. Kept identical to the CRD pattern (tests check it).
PATTERN = r"(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|[0-9A-Za-z*?,/-]+( [0-9A-Za-z*?,/-]+){4})"

_FIELDS = ("minute", "hour", "day-of-month", "month", "day-of-week")
_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 6))
_MONTHS = {
    m: i + 1 for i, m in enumerate(["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"])
}
_DAYS = {d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}


class CronError(ValueError):
    """The schedule is not valid; the message says which field and why (no value is secret here)."""


def _value(text: str, index: int) -> int:
    names = _MONTHS if index == 3 else _DAYS if index == 4 else {}
    if text.lower() in names:
        return names[text.lower()]
    if not re.fullmatch(r"[0-9]{1,2}", text, flags=re.ASCII):
        raise CronError(f"{_FIELDS[index]}: {text!r} is not a number{' or name' if names else ''}")
    value = int(text)
    low, high = _RANGES[index]
    if not low <= value <= high:
        raise CronError(f"{_FIELDS[index]}: {value} is outside {low}-{high}")
    return value


def _check_field(text: str, index: int) -> None:
    for part in text.split(","):
        base, slash, step = part.partition("/")
        if slash and (not re.fullmatch(r"[0-9]{1,2}", step, flags=re.ASCII) or int(step) == 0):
            raise CronError(f"{_FIELDS[index]}: bad step in {part!r}")
        if base in ("*", "?"):
            if base == "?" and index not in (2, 4):
                raise CronError(f"{_FIELDS[index]}: '?' is only allowed in the day fields")
            continue
        low_text, dash, high_text = base.partition("-")
        low = _value(low_text, index)
        if dash and _value(high_text, index) < low:
            raise CronError(f"{_FIELDS[index]}: range {base!r} runs backwards")


def check(expression: str) -> str:
    """The schedule unchanged if valid, else CronError."""
    if len(expression) > 100 or re.fullmatch(PATTERN, expression, flags=re.ASCII) is None:
        raise CronError("expected five fields (minute hour day-of-month month day-of-week) or @daily/@hourly/...")
    if expression.startswith("@"):
        return expression
    for index, text in enumerate(expression.split(" ")):
        _check_field(text, index)
    return expression
