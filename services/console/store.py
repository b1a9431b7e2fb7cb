"""The console's queries: users, sessions and the audit log. Nothing else touches its tables."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from libs.common.store import SchemaStore
from services.console.accounts import Role, Viewer, checked_role


@dataclass(frozen=True)
class User:
    id: str
    email: str
    password_hash: str
    role: Role
    created_at: datetime


@dataclass(frozen=True)
class PendingSignIn:
    """A single sign-on sent to the provider: what its callback must match."""

    browser_hash: str
    nonce: str
    code_verifier: str
    next: str


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: datetime
    actor_email: str
    action: str
    target: str
    before: Any
    after: Any


class ConsoleStore(SchemaStore):
    """Queries over one session (the caller's transaction) in the console's schema."""

    async def add_user(self, user_id: str, email: str, password_hash: str, role: Role) -> bool:
        """False when the email is taken."""
        result = await self._execute(
            "INSERT INTO {s}.users (id, email, password_hash, role) "
            "VALUES (:id, :email, :hash, :role) ON CONFLICT (email) DO NOTHING RETURNING id",
            {"id": user_id, "email": email, "hash": password_hash, "role": role},
        )
        return result.first() is not None

    async def user_by_email(self, email: str) -> User | None:
        result = await self._execute(
            "SELECT id, email, password_hash, role, created_at FROM {s}.users WHERE email = :email",
            {"email": email},
        )
        row = result.first()
        return None if row is None else _user(row)

    async def users(self) -> list[User]:
        result = await self._execute(
            "SELECT id, email, password_hash, role, created_at FROM {s}.users ORDER BY email"
        )
        return [_user(row) for row in result]

    async def start_session(
        self, token_hash: str, user_id: str, csrf_token: str, expires_at: datetime
    ) -> None:
        await self._execute(
            "INSERT INTO {s}.sessions (token_hash, user_id, csrf_token, expires_at) "
            "VALUES (:token_hash, :user_id, :csrf, :expires_at)",
            {
                "token_hash": token_hash,
                "user_id": user_id,
                "csrf": csrf_token,
                "expires_at": expires_at,
            },
        )

    async def viewer(self, token_hash: str, now: datetime) -> Viewer | None:
        """Who holds the session, if it exists and has not expired."""
        result = await self._execute(
            "SELECT u.id, u.email, u.role, s.csrf_token FROM {s}.sessions s "
            "JOIN {s}.users u ON u.id = s.user_id "
            "WHERE s.token_hash = :token_hash AND s.expires_at > :now",
            {"token_hash": token_hash, "now": now},
        )
        row = result.first()
        if row is None:
            return None
        return Viewer(row.id, row.email, checked_role(row.role), row.csrf_token)

    async def end_session(self, token_hash: str) -> None:
        await self._execute(
            "DELETE FROM {s}.sessions WHERE token_hash = :token_hash", {"token_hash": token_hash}
        )

    async def forget_expired_sessions(self, now: datetime) -> None:
        await self._execute("DELETE FROM {s}.sessions WHERE expires_at <= :now", {"now": now})

    async def begin_oidc_sign_in(
        self, state_hash: str, pending: PendingSignIn, expires_at: datetime
    ) -> None:
        await self._execute(
            "INSERT INTO {s}.oidc_sign_ins "
            "(state_hash, browser_hash, nonce, code_verifier, next, expires_at) "
            "VALUES (:state_hash, :browser_hash, :nonce, :code_verifier, :next, :expires_at)",
            {
                "state_hash": state_hash,
                "browser_hash": pending.browser_hash,
                "nonce": pending.nonce,
                "code_verifier": pending.code_verifier,
                "next": pending.next,
                "expires_at": expires_at,
            },
        )

    async def take_oidc_sign_in(self, state_hash: str, now: datetime) -> PendingSignIn | None:
        """The sign-in the state names, if it has not expired; gone afterwards either way (a
        state is good once)."""
        await self._execute("DELETE FROM {s}.oidc_sign_ins WHERE expires_at <= :now", {"now": now})
        result = await self._execute(
            "DELETE FROM {s}.oidc_sign_ins WHERE state_hash = :state_hash "
            "RETURNING browser_hash, nonce, code_verifier, next",
            {"state_hash": state_hash},
        )
        row = result.first()
        if row is None:
            return None
        return PendingSignIn(row.browser_hash, row.nonce, row.code_verifier, row.next)

    async def record(
        self, viewer: Viewer, action: str, target: str, before: Any, after: Any
    ) -> None:
        """Add a change to the audit log."""
        await self._execute(
            "INSERT INTO {s}.audit_log (actor_id, actor_email, action, target, before, after) "
            "VALUES (:actor_id, :actor_email, :action, :target, "
            "CAST(:before AS jsonb), CAST(:after AS jsonb))",
            {
                "actor_id": viewer.user_id,
                "actor_email": viewer.email,
                "action": action,
                "target": target,
                "before": None if before is None else json.dumps(before),
                "after": None if after is None else json.dumps(after),
            },
        )

    async def audit_log(self, limit: int, before_id: int | None) -> list[AuditEntry]:
        """The latest changes first, `limit` of them, older than `before_id` when given."""
        result = await self._execute(
            "SELECT id, at, actor_email, action, target, before, after FROM {s}.audit_log "
            "WHERE (CAST(:before_id AS bigint) IS NULL OR id < :before_id) "
            "ORDER BY id DESC LIMIT :limit",
            {"before_id": before_id, "limit": limit},
        )
        return [
            AuditEntry(
                row.id, row.at, row.actor_email, row.action, row.target, row.before, row.after
            )
            for row in result
        ]

    async def journey_layout(self, journey_id: str) -> Any:
        """Where the canvas last drew the journey's nodes; None if it never did."""
        result = await self._execute(
            "SELECT positions FROM {s}.journey_layouts WHERE journey_id = :id", {"id": journey_id}
        )
        row = result.first()
        return None if row is None else row.positions

    async def keep_journey_layout(self, journey_id: str, positions: Any) -> None:
        await self._execute(
            "INSERT INTO {s}.journey_layouts (journey_id, positions) "
            "VALUES (:id, CAST(:positions AS jsonb)) ON CONFLICT (journey_id) DO UPDATE "
            "SET positions = EXCLUDED.positions, updated_at = now()",
            {"id": journey_id, "positions": json.dumps(positions)},
        )


def _user(row: Any) -> User:
    return User(row.id, row.email, row.password_hash, checked_role(row.role), row.created_at)
