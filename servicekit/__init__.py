"""Shared plumbing for every service: settings, database, events, outbox, inbox, HTTP, health, logging.

Nothing in this package knows about customers, scores or alerts; services hold the domain.
"""
