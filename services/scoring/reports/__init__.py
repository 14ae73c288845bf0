"""Value reports: pyramid, concentration, tier migration, RFM and the summary (docs/reports.md)."""
