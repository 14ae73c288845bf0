from servicekit.migrations import run_env
from services.interaction.models import metadata

run_env(metadata)
