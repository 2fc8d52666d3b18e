"""Flow times as collectors write them: units, text forms, and the values no real flow can have.

Raw tables hold times as integer nanoseconds since the epoch (GoFlow2's unit). A source whose
exporter writes another unit says so (`FlowSource.time_unit`, FLOWS_SOURCE_TIME_UNIT) and its
numbers are scaled on read. A number that is a plausible time only in *another* unit (GoFlow2
fed by an exporter in seconds: 1635390000) is not guessed at: the record is quarantined saying
which unit it looks like, so the site sets the unit instead of having a mix silently "repaired".

Thresholds, each with its reason:
- plausible: from the first partition (nothing earlier can be materialized) to 2100-01-01
  (no clock of a running exporter is later); a value is said to "look like" a unit when read in
  that unit it falls in this range. The ranges of s, ms, µs and ns do not overlap (each is
  1000x the previous, and the range spans less than 1000x), so the answer is unique.
- received: a flow cannot start or end after it was received (GoFlow2's `time_received_ns`,
  nfdump's `received`, or else the time its file was last written), beyond `CLOCK_SKEW_NS`
  (5 minutes: exporters' and collectors' clocks disagree by seconds when NTP works, and a
  file written over a 5-minute rotation carries its flows' arrival that late).
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Literal, get_args

from flows_pipeline.hour import FIRST_HOUR_KEY, NS_PER_MS, parse_hour_key

TimeUnit = Literal["ns", "us", "ms", "s"]
TIME_UNITS: tuple[str, ...] = get_args(TimeUnit)
NS_PER_UNIT: dict[str, int] = {"ns": 1, "us": 1_000, "ms": NS_PER_MS, "s": 1_000 * NS_PER_MS}
UNIT_NAMES: dict[str, str] = {"ns": "nanoseconds", "us": "microseconds", "ms": "milliseconds", "s": "seconds"}

FIRST_PLAUSIBLE_NS = int(parse_hour_key(FIRST_HOUR_KEY).timestamp()) * NS_PER_UNIT["s"]
LAST_PLAUSIBLE_NS = int(datetime(2100, 1, 1, tzinfo=UTC).timestamp()) * NS_PER_UNIT["s"]
CLOCK_SKEW_NS = 5 * 60 * NS_PER_UNIT["s"]
_INT64_MAX = 2**63 - 1


class BadTime(ValueError):
    """A time field that cannot be read; the message is the quarantine reason's problem."""


def plausible_range(unit: str) -> tuple[int, int]:
    """[low, high) of the numbers that, read in `unit`, are a plausible flow time."""
    per = NS_PER_UNIT[unit]
    return -(-FIRST_PLAUSIBLE_NS // per), -(-LAST_PLAUSIBLE_NS // per)


def looks_like(as_written: int, configured: str) -> str | None:
    """The other unit in which `as_written` is a plausible time, when it is not one in `configured`."""
    low, high = plausible_range(configured)
    if low <= as_written < high:
        return None
    for unit in TIME_UNITS:
        low, high = plausible_range(unit)
        if unit != configured and low <= as_written < high:
            return unit
    return None


_DIGITS = re.compile(r"[+-]?\d{1,20}")
_SCIENTIFIC = re.compile(r"[+-]?\d+(\.\d+)?[eE][+-]?\d+")


def time_ns(value: object, unit: str) -> int | None:
    """A time field as epoch nanoseconds: a number in `unit`, or ISO 8601 text with a zone.

    Raises BadTime with the problem. Text without a zone is refused: GoFlow2's and the CSV
    format's times are UTC numbers, so a zoneless string's zone is unknown, never assumed.
    """
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise BadTime("not a time")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise BadTime("not a time")
        if unit == "ns" and not value.is_integer():
            raise BadTime("fraction of a nanosecond")
        return _checked(round(value * NS_PER_UNIT[unit]), value, unit)
    if isinstance(value, int):
        return _checked(value * NS_PER_UNIT[unit], value, unit)
    if not isinstance(value, str):
        raise BadTime("not a time")
    text = value.strip()
    if _DIGITS.fullmatch(text):
        return _checked(int(text) * NS_PER_UNIT[unit], int(text), unit)
    if _SCIENTIFIC.fullmatch(text):
        raise BadTime("in scientific notation, which has lost digits (a spreadsheet's rounding?)")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise BadTime("neither a number nor an ISO 8601 time") from None
    if moment.tzinfo is None:
        raise BadTime("ISO time without a zone (ambiguous: write Z or an offset)")
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * NS_PER_UNIT["s"] + delta.microseconds * 1_000


def _checked(nanoseconds: int, as_written: float, unit: str) -> int:
    if not -_INT64_MAX - 1 <= nanoseconds <= _INT64_MAX:
        other = looks_like(int(as_written), unit)
        hint = f": looks like {UNIT_NAMES[other]}" if other else ""
        raise BadTime(f"out of range in {UNIT_NAMES[unit]}{hint}")
    return nanoseconds
