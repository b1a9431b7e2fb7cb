"""`python -m services.segment [migrate]`."""

import sys
from pathlib import Path

from libs.common.service import main
from services.segment.app import create
from services.segment.settings import SegmentSettings

sys.exit(main(SegmentSettings(), create, Path(__file__).parent / "migrations"))
