"""Saved segments: filters over scores, value and profile that list, count and export customers."""
