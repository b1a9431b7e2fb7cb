"""`python -m services.console [migrate | create-admin --email E | create-user ...]`."""

import sys
from pathlib import Path

from libs.common.service import main
from services.console.app import create
from services.console.commands import COMMANDS, run_command
from services.console.settings import ConsoleSettings

if sys.argv[1:2] and sys.argv[1] in COMMANDS:
    sys.exit(run_command(ConsoleSettings(), sys.argv[1:]))
sys.exit(main(ConsoleSettings(), create, Path(__file__).parent / "migrations"))
