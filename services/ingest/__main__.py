"""`python -m services.ingest [migrate]`."""

import sys
from pathlib import Path

from libs.common.service import main
from services.ingest.app import create
from services.ingest.settings import IngestSettings

sys.exit(main(IngestSettings(), create, Path(__file__).parent / "migrations"))
