"""Budget periods: calendar days, ISO weeks or months in BUDGET_TIMEZONE."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

PeriodKind = Literal["day", "week", "month"]


@dataclass(frozen=True, slots=True)
class Period:
    """One budget period: its id (part of every counter's key) and its [start, end) in UTC."""

    id: str
    start: datetime
    end: datetime

    def seconds_left(self, now: datetime) -> float:
        """Seconds from `now` until the period resets."""
        return max(0.0, (self.end - now).total_seconds())


def period_at(now: datetime, kind: PeriodKind, zone: str) -> Period:
    """The period containing `now` (an aware datetime), aligned to the calendar in `zone`."""
    local = now.astimezone(ZoneInfo(zone))
    day = local.replace(hour=0, minute=0, second=0, microsecond=0, tzinfo=None)
    if kind == "day":
        start, end, ident = day, day + timedelta(days=1), day.strftime("%Y-%m-%d")
    elif kind == "week":
        start = day - timedelta(days=day.weekday())  # ISO weeks start on Monday
        year, week, _ = start.isocalendar()
        end, ident = start + timedelta(days=7), f"{year}-W{week:02d}"
    else:
        start = day.replace(day=1)
        end = (start + timedelta(days=32)).replace(day=1)
        ident = start.strftime("%Y-%m")
    # Wall-clock midnight, then to UTC: a DST change makes a period 23 or 25 hours long.
    tz = ZoneInfo(zone)
    return Period(
        id=ident,
        start=start.replace(tzinfo=tz).astimezone(UTC),
        end=end.replace(tzinfo=tz).astimezone(UTC),
    )
