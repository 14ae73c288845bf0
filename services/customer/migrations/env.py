from servicekit.migrations import run_env
from services.customer.main import metadata

run_env(metadata)
