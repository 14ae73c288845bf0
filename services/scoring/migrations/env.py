from servicekit.migrations import run_env
from services.scoring.main import metadata

run_env(metadata)
