"""Customer reports: the churn situation, churn reasons, win-back and cohorts (docs/reports.md)."""
