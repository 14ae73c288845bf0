"""The loyalty points ledger and member tiers (docs/loyalty-points.md)."""
