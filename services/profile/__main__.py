"""`python -m services.profile [migrate]`."""

import sys
from pathlib import Path

from libs.common.service import main
from services.profile.app import create
from services.profile.settings import ProfileSettings

sys.exit(main(ProfileSettings(), create, Path(__file__).parent / "migrations"))
