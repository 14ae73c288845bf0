"""Scoring: per-customer features built from events, churn risk and health with their reasons, history."""
