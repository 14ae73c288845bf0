"""Model versions (value and churn) and the jobs that fit them: tables and API shapes."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, StrictBool, StrictFloat, StrictInt, StrictStr, StringConstraints
from pydantic import Field as PydanticField
from sqlalchemy import Boolean, Column, Date, Float, Index, LargeBinary, String, text
from sqlmodel import Field

from servicekit.clock import utc_now
from servicekit.pagination import Page
from servicekit.types import UtcDateTime
from services.scoring.common import ScoringTable, json_column, ts_column


class ValueModelVersion(ScoringTable, table=True):
    """A fitted BG/NBD + Gamma-Gamma version; exactly one is active once a refit has run."""

    __tablename__ = "value_models"

    id: str = Field(primary_key=True, max_length=50)
    params: dict[str, Any] = json_column(dict)  # see services.scoring.value.valuation.ValueModel.params_json
    metrics: dict[str, Any] = json_column(dict)
    n_customers: int = 0
    calibration_end: date = Field(sa_column=Column(Date, nullable=False))
    fitted_at: datetime = Field(default_factory=utc_now, sa_column=Column(UtcDateTime(), nullable=False))
    job_id: str | None = Field(default=None, max_length=50)
    active: bool = Field(default=False, sa_column=Column(Boolean, nullable=False, default=False, index=True))


class ChurnModelVersion(ScoringTable, table=True):
    """A trained churn classifier version (joblib bytes); while one is active it replaces the rules."""

    __tablename__ = "churn_models"

    id: str = Field(primary_key=True, max_length=50)
    algorithm: str = Field(max_length=50)
    params: dict[str, Any] = json_column(dict)  # feature lists, cutoff, settings of the run
    metrics: dict[str, Any] = json_column(dict)
    n_samples: int = 0
    n_churned: int = 0
    blob: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    fitted_at: datetime = Field(default_factory=utc_now, sa_column=Column(UtcDateTime(), nullable=False))
    job_id: str | None = Field(default=None, max_length=50)
    active: bool = Field(default=False, sa_column=Column(Boolean, nullable=False, default=False, index=True))


class Job(ScoringTable, table=True):
    """A background job (value refit, churn training): committed as queued, claimed by a worker."""

    __tablename__ = "jobs"
    # One running job per kind, enforced by the database: a second worker's claim fails, whatever the race.
    __table_args__ = (
        Index(
            "uq_jobs_running_kind",
            "kind",
            unique=True,
            sqlite_where=text("status = 'running'"),
            postgresql_where=text("status = 'running'"),
        ),
    )

    id: str = Field(primary_key=True, max_length=50)
    kind: str = Field(sa_type=String(20))  # value_refit | churn_train
    status: str = Field(default="queued", sa_type=String(20), index=True)  # queued|running|succeeded|failed
    progress: float = Field(default=0.0, sa_type=Float)
    message: str | None = Field(default=None, max_length=2000)
    request: dict[str, Any] = json_column(dict)
    result: dict[str, Any] = json_column(dict)
    worker: str | None = Field(default=None, max_length=200)
    created_at: datetime = Field(default_factory=utc_now, sa_column=Column(UtcDateTime(), nullable=False))
    started_at: datetime | None = ts_column()
    heartbeat_at: datetime | None = ts_column()
    finished_at: datetime | None = ts_column()


# ---- API shapes ----------------------------------------------------------------------------------


class ValueRefitRequest(BaseModel):
    calibration_end: date | None = None  # default: the latest purchase day held
    segment: str | None = PydanticField(None, max_length=100)  # fit on one segment's customers only
    rescore: StrictBool = True  # apply the new model to every customer at once (else on their next event)


AttributeName = Annotated[str, StringConstraints(min_length=1, max_length=100)]
AttributeValue = Annotated[StrictStr, StringConstraints(max_length=200)] | StrictBool | StrictInt | StrictFloat


class ChurnTrainRequest(BaseModel):
    cutoff: datetime | None = None  # active customers are described as of this time (default: now)
    # The audience: train only on customers of this segment and with these attribute values (all must hold),
    # e.g. one business line or one import's customers. Attributes are those scoring receives (non-personal).
    segment: str | None = PydanticField(
        None, min_length=1, max_length=100, description="train only on customers of this segment"
    )
    attributes: dict[AttributeName, AttributeValue] = PydanticField(
        default_factory=dict,
        max_length=10,
        description="train only on customers whose attributes have these values (all of them)",
    )
    algorithm: Literal["logistic", "gbm"] | None = PydanticField(
        None,
        description="gbm: gradient boosting (interactions, thresholds); logistic: one term per column; "
        "default: gbm from 2,000 labelled customers on, logistic below",
    )
    folds: int = PydanticField(5, ge=2, le=10)
    activate: StrictBool = True


class JobPublic(BaseModel):
    id: str
    kind: str
    status: str
    progress: float
    message: str | None
    request: dict[str, Any]
    result: dict[str, Any]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class ModelVersionPublic(BaseModel):
    id: str
    kind: str  # value | churn
    active: bool
    fitted_at: datetime
    algorithm: str
    params: dict[str, Any]
    metrics: dict[str, Any]
    n_customers: int
    calibration_end: date | None = None
    job_id: str | None = None


class ModelVersionsPublic(Page[ModelVersionPublic]):
    pass
