"""`python -m services.dispatch [migrate]`."""

import sys
from pathlib import Path

from libs.common.service import main
from services.dispatch.app import create
from services.dispatch.settings import DispatchSettings

sys.exit(main(DispatchSettings(), create, Path(__file__).parent / "migrations"))
