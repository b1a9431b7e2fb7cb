"""`python -m services.journey [migrate]`."""

import sys
from pathlib import Path

from libs.common.service import main
from services.journey.app import create
from services.journey.settings import JourneySettings

sys.exit(main(JourneySettings(), create, Path(__file__).parent / "migrations"))
