"""Budget periods: calendar-aligned in BUDGET_TIMEZONE, DST included."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from backend.budgets.periods import period_at


def test_a_week_starts_on_monday_midnight_local_and_is_named_by_its_iso_week() -> None:
    # Sunday 2026-03-29 23:30 in Berlin is still the week of Monday 23 March (ISO week 13),
    # and that week loses an hour to the change to summer time.
    sunday_night = datetime(2026, 3, 29, 21, 30, tzinfo=UTC)  # 23:30 CEST
    week = period_at(sunday_night, "week", "Europe/Berlin")
    assert week.id == "2026-W13"
    assert week.start == datetime(2026, 3, 22, 23, 0, tzinfo=UTC)  # Mon 00:00 CET
    assert week.end == datetime(2026, 3, 29, 22, 0, tzinfo=UTC)  # Mon 00:00 CEST
    assert week.end - week.start == timedelta(hours=167)
    after = period_at(week.end, "week", "Europe/Berlin")
    assert after.id == "2026-W14" and after.start == week.end


def test_the_first_days_of_january_can_belong_to_the_last_iso_week_of_the_year_before() -> None:
    week = period_at(datetime(2027, 1, 2, 12, tzinfo=UTC), "week", "UTC")
    assert week.id == "2026-W53"
    assert week.start == datetime(2026, 12, 28, tzinfo=UTC)


def test_a_day_and_a_month_follow_the_zone_not_utc() -> None:
    late = datetime(2026, 1, 31, 23, 30, tzinfo=UTC)  # already 1 February in Berlin
    assert period_at(late, "day", "Europe/Berlin").id == "2026-02-01"
    assert period_at(late, "month", "Europe/Berlin").id == "2026-02"
    assert period_at(late, "month", "UTC").id == "2026-01"
    autumn = period_at(datetime(2026, 10, 25, 12, tzinfo=UTC), "day", "Europe/Berlin")
    assert autumn.end - autumn.start == timedelta(hours=25)
