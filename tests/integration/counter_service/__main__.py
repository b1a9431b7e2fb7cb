"""`python -m tests.integration.counter_service [migrate]`."""

import sys
from pathlib import Path

from libs.common.service import main
from tests.integration.counter_service.app import create
from tests.integration.counter_service.settings import CounterSettings

sys.exit(main(CounterSettings(), create, Path(__file__).parent / "migrations"))
