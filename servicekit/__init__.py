"""Shared plumbing for every service: settings, database, events, outbox, inbox, HTTP, health, logging.

Nothing in this package knows about customers, scores or alerts; services hold the domain.
"""

from servicekit.model_defaults import install as _install_model_defaults

_install_model_defaults()
