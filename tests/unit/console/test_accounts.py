"""Roles, passwords and tokens: what the console's gate decides with."""

from __future__ import annotations

import pytest

from services.console.accounts import (
    InvalidAccount,
    Viewer,
    checked_role,
    hash_password,
    new_token,
    normal_email,
    password_matches,
    same_token,
    token_hash,
)


def test_only_admins_and_marketers_edit_and_only_admins_administer() -> None:
    def viewer(role: str) -> Viewer:
        return Viewer("u", "e@example.com", checked_role(role), "t")

    assert [viewer(r).can_edit for r in ("admin", "marketer", "analyst")] == [True, True, False]
    assert [viewer(r).is_admin for r in ("admin", "marketer", "analyst")] == [True, False, False]


def test_an_unknown_role_is_refused_naming_the_field() -> None:
    with pytest.raises(InvalidAccount) as refused:
        checked_role("superuser")
    assert refused.value.field == "role"


def test_a_password_is_stored_as_an_argon2id_hash_that_verifies_only_itself() -> None:
    hashed = hash_password("a long enough password")
    assert hashed.startswith("$argon2id$")
    assert "a long enough password" not in hashed
    assert password_matches(hashed, "a long enough password")
    assert not password_matches(hashed, "a long enough passwore")
    assert not password_matches(None, "a long enough password")
    assert not password_matches("not a hash", "a long enough password")


def test_a_short_password_is_refused_naming_the_field() -> None:
    with pytest.raises(InvalidAccount) as refused:
        hash_password("short")
    assert refused.value.field == "password"


def test_emails_are_compared_trimmed_and_in_lower_case() -> None:
    assert normal_email("  Ana@Example.COM ") == "ana@example.com"
    with pytest.raises(InvalidAccount):
        normal_email("not an email")


def test_session_tokens_are_fresh_and_kept_only_as_their_hash() -> None:
    first, second = new_token(), new_token()
    assert first != second and len(first) >= 43
    assert token_hash(first) != first and len(token_hash(first)) == 64
    assert same_token(first, first)
    assert not same_token(None, first)
    assert not same_token(second, first)
