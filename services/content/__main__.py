"""`python -m services.content [migrate]`."""

import sys
from pathlib import Path

from libs.common.service import main
from services.content.app import create
from services.content.settings import ContentSettings

sys.exit(main(ContentSettings(), create, Path(__file__).parent / "migrations"))
