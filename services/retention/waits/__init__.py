"""Waits that end early: a sequence's wait step with `until` is woken when one of its events arrives."""
