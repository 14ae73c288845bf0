from servicekit.migrations import run_env
from services.customer.models import metadata

run_env(metadata)
