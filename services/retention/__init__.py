"""Retention: churn alerts raised from scores and complaints, deduplicated per customer and reason."""
