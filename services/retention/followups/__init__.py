"""Scheduled follow-ups per tier: regular return visits, calls or satisfaction surveys for key customers."""
