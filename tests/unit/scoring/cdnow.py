"""The CDNOW sample as per-customer purchase-day spend (several purchases on one day are one purchase)."""

from collections import defaultdict
from datetime import date
from pathlib import Path

CDNOW_SAMPLE = Path(__file__).resolve().parents[2] / "data" / "CDNOW_sample.txt"
CALIBRATION_END = date(1997, 9, 30)
HOLDOUT_END = date(1998, 6, 30)  # 39 weeks after the calibration period


def cdnow_rows() -> list[tuple[str, date, float]]:
    """(sample customer id, date, dollars) per line of the file."""
    rows = []
    for line in CDNOW_SAMPLE.read_text().splitlines():
        _master, customer, day, _cds, amount = line.split()
        rows.append((customer, date(int(day[:4]), int(day[4:6]), int(day[6:])), float(amount)))
    return rows


def cdnow_history() -> dict[str, dict[date, float]]:
    history: dict[str, dict[date, float]] = defaultdict(lambda: defaultdict(float))
    for customer, day, amount in cdnow_rows():
        history[customer][day] += amount
    return {c: dict(days) for c, days in history.items()}
