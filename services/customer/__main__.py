from servicekit.runner import main
from services.customer.main import SPEC

main(SPEC)
