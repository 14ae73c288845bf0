"""Consent per channel and contact preferences (docs/consent.md)."""
