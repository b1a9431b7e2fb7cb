"""Who may do what in the console: roles, password hashes, session and CSRF tokens.

Pure, apart from argon2's work: the routes and the command line decide with these.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from typing import Final, Literal, get_args

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

Role = Literal["admin", "marketer", "analyst"]
ROLES: Final[tuple[Role, ...]] = get_args(Role)
# Roles that may change what the platform does (segments, journeys, templates).
_EDITORS: Final = frozenset({"admin", "marketer"})
# Roles that may add people and see who did what.
_ADMINISTRATORS: Final = frozenset({"admin"})

MIN_PASSWORD_LENGTH: Final = 12
MAX_PASSWORD_LENGTH: Final = 1024
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}$")

# argon2id with the library's defaults (RFC 9106's second recommendation: 64 MiB, 3 passes).
_hasher = PasswordHasher()
# Verified against when the email is unknown, so a wrong email costs what a wrong password does.
_UNKNOWN_USER_HASH: Final = _hasher.hash(secrets.token_urlsafe(16))


class InvalidAccount(ValueError):
    """A new account's email, password or role is not acceptable; `field` names which."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Viewer:
    """The signed-in person a request is made by."""

    user_id: str
    email: str
    role: Role
    csrf_token: str

    @property
    def can_edit(self) -> bool:
        return self.role in _EDITORS

    @property
    def is_admin(self) -> bool:
        return self.role in _ADMINISTRATORS


def normal_email(email: str) -> str:
    """The email as stored and compared: trimmed, lower case; InvalidAccount if not one."""
    email = email.strip().lower()
    if not _EMAIL.match(email):
        raise InvalidAccount("email", "email: not an email address")
    return email


def checked_role(role: str) -> Role:
    for known in ROLES:
        if role == known:
            return known
    raise InvalidAccount("role", f"role: one of {', '.join(ROLES)}")


def hash_password(password: str) -> str:
    """An argon2id hash of a new password; InvalidAccount if it is too short or too long."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidAccount("password", f"password: at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise InvalidAccount("password", f"password: at most {MAX_PASSWORD_LENGTH} characters")
    return _hasher.hash(password)


def password_matches(password_hash: str | None, password: str) -> bool:
    """Whether `password` is the one hashed; None (no such user) costs the same and is False."""
    if len(password) > MAX_PASSWORD_LENGTH:
        return False
    try:
        return _hasher.verify(password_hash or _UNKNOWN_USER_HASH, password) and (
            password_hash is not None
        )
    except (VerificationError, InvalidHashError):
        return False


def new_token() -> str:
    """A fresh secret for a session cookie or a CSRF token: 256 random bits."""
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """What the sessions table keeps of a cookie: its SHA-256, so a copy of the table signs
    nobody in."""
    return hashlib.sha256(token.encode()).hexdigest()


def same_token(sent: str | None, expected: str) -> bool:
    return sent is not None and secrets.compare_digest(sent.encode(), expected.encode())
