from servicekit.runner import main
from services.scoring.main import SPEC

main(SPEC)
