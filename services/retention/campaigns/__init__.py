"""Win-back campaigns: an offer catalogue, campaigns over a saved segment with a holdout, and their report."""
