"""Interactions: every contact with a customer, complaints with an SLA, and NPS/CSAT survey answers."""
