from servicekit.runner import main
from services.retention.main import SPEC

main(SPEC)
