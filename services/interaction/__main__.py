from servicekit.runner import main
from services.interaction.main import SPEC

main(SPEC)
