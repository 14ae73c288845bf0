"""The wake registry: which enrolment waits for which events (docs/sequences.md#waits-that-end-early)."""

from __future__ import annotations

from sqlmodel import Field

from services.retention.db import RetentionTable


class EnrolmentWake(RetentionTable, table=True):
    """One row per enrolment parked at a wait with `until`: its customer and the events that end the wait
    (",purchased,complaint_opened," so one LIKE finds an event). Written and removed by the engine in the
    transaction that parks or moves the enrolment; read by the consumer when such an event arrives."""

    __tablename__ = "enrolment_wakes"

    enrolment_id: str = Field(primary_key=True, max_length=36)
    customer_id: str = Field(max_length=100, index=True)
    events: str = Field(max_length=200)
