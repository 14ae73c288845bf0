# The gateway's tables: API keys, rate buckets, the audit log (each module registers its own).
import gateway.audit
import gateway.ratelimit  # noqa: F401
from gateway.keys import metadata
from servicekit.migrations import run_env

run_env(metadata)
