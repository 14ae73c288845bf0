"""What caused a score: a change of the customer, of the lens, or of the customer's silence. Pure.

A score from the customer's own event (an interaction, complaint, survey, profile change) reports
something the customer did. Two kinds of rescoring report nothing the customer did:

* a change of lens: a model job rescoring everyone (a churn model activated, a value refit, a
  rescore) or an evaluation of the alert rules on the current state. The book is judged anew at the
  data clock; each customer's own situation is as of its own latest event;
* a lapse: the silent-customer sweep scoring a customer who has gone quiet. What it reports (recency
  grew) happened since scoring last looked at the customer.
"""

from __future__ import annotations

from contracts.scoring import ScoreUpdated

SWEEP_CAUSE = "scoring.sweep"  # scoring's silent-customer sweep
JOB_CAUSE_PREFIX = "job."  # scoring's model jobs: job.churn_train, job.value_refit, job.rescore
EVALUATION_CAUSE = "retention.evaluation"  # POST /alerts/evaluate: the rules on each current state


def cause_of(score: ScoreUpdated) -> str:
    """The score's cause by kind; for events of earlier producers, read from the lineage id."""
    if score.cause:
        return score.cause
    if score.caused_by.startswith("job:"):
        return JOB_CAUSE_PREFIX
    if score.caused_by.startswith("sweep:"):
        return SWEEP_CAUSE
    return ""


def is_lens_change(score: ScoreUpdated) -> bool:
    cause = cause_of(score)
    return cause.startswith(JOB_CAUSE_PREFIX) or cause == EVALUATION_CAUSE


def is_lapse(score: ScoreUpdated) -> bool:
    return cause_of(score) == SWEEP_CAUSE
