"""`python -m services.console create-admin --email E` (and `create-user --role R`): adds a
person who may sign in, the password read from CLOSELOOP_CONSOLE_PASSWORD or standard input."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import uuid
from collections.abc import Sequence
from typing import Final

from libs.common.api import Database, StoreTransactions
from libs.common.db import create_engine
from services.console.accounts import (
    ROLES,
    InvalidAccount,
    Role,
    Viewer,
    checked_role,
    hash_password,
    normal_email,
)
from services.console.settings import ConsoleSettings
from services.console.store import ConsoleStore

COMMANDS: Final = ("create-admin", "create-user")
PASSWORD_VARIABLE: Final = "CLOSELOOP_CONSOLE_PASSWORD"
# Who the audit log names for what the command line did.
_COMMAND_LINE = Viewer("command-line", "command line", "admin", "")


def run_command(settings: ConsoleSettings, argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.console")
    parser.add_argument("command", choices=COMMANDS)
    parser.add_argument("--email", required=True)
    parser.add_argument("--role", choices=ROLES, default=None)
    arguments = parser.parse_args(argv)
    role = "admin" if arguments.command == "create-admin" else arguments.role
    if role is None:
        parser.error("create-user needs --role")
    password = os.environ.get(PASSWORD_VARIABLE) or sys.stdin.readline().rstrip("\r\n")
    try:
        email = normal_email(arguments.email)
        added = asyncio.run(_add_user(settings, email, checked_role(role), password))
    except InvalidAccount as invalid:
        print(f"refused: {invalid}", file=sys.stderr)
        return 2
    if not added:
        print(f"refused: {email} already signs in", file=sys.stderr)
        return 1
    print(f"{email} may now sign in as {role}")
    return 0


async def _add_user(settings: ConsoleSettings, email: str, role: Role, password: str) -> bool:
    password_hash = hash_password(password)
    engine = create_engine(settings)
    try:
        stores = StoreTransactions(Database.of(engine, settings.schema_name), ConsoleStore)
        async with stores() as store:
            if not await store.add_user(f"usr_{uuid.uuid4().hex}", email, password_hash, role):
                return False
            after = {"email": email, "role": role}
            await store.record(_COMMAND_LINE, "user.added", email, None, after)
        return True
    finally:
        await engine.dispose()
