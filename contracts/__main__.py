"""`python -m contracts generate|check` (behind `make schemas`): see contracts/schemas.py."""

import sys

from contracts.schemas import main

sys.exit(main(sys.argv[1:]))
