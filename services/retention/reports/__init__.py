"""Retention reports: the read model fed by consumed events, the report queries and their routes."""
