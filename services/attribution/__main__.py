"""`python -m services.attribution [migrate]`."""

import sys
from pathlib import Path

from libs.common.service import main
from services.attribution.app import create
from services.attribution.settings import AttributionSettings

sys.exit(main(AttributionSettings(), create, Path(__file__).parent / "migrations"))
