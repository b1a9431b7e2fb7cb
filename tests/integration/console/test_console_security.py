"""The console's gate, over HTTP against a real console and segment service: sessions, roles,
CSRF, escaping, and the audit log of every change."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from sqlalchemy import text

from libs.common.db import create_engine
from libs.common.settings import Settings
from tests.events import profile_updated
from tests.integration.console.conftest import Console
from tests.integration.console.harness import ConsoleBrowser, Person, console_command
from tests.integration.support import wait_for

pytestmark = pytest.mark.integration


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def _segment_form(name: str, conditions: Any) -> dict[str, str]:
    return {"name": name, "description": "", "conditions": json.dumps(conditions)}


async def _segment_names(console: Console) -> list[str]:
    response = await console.segment.http.get("/segments")
    return [segment["name"] for segment in response.json()["segments"]]


async def _audit_rows(console: Console, target: str) -> list[dict[str, Any]]:
    engine = create_engine(Settings(database_url=console.segment.stack.database_url))
    try:
        async with engine.connect() as connection:
            result = await connection.execute(
                text(
                    f"SELECT actor_email, action, target, before, after FROM {console.schema}"
                    ".audit_log WHERE target = :target ORDER BY id"
                ),
                {"target": target},
            )
            return [dict(row._mapping) for row in result]
    finally:
        await engine.dispose()


async def test_pages_without_a_session_go_to_sign_in_and_posts_are_refused(
    console: Console,
) -> None:
    stranger = console.browser()
    for page in ("/segments", "/segments/new", "/audit", "/users"):
        response = await stranger.get(page)
        assert response.status_code == 303, page
        assert response.headers["location"].startswith("/sign-in?next=%2F"), page
    preview = await stranger.post_json("/segments/preview", {"conditions": {"tag": "x"}}, csrf="")
    assert preview.status_code == 401
    assert preview.json()["error"]["code"] == "sign_in_required"
    created = await stranger.post_form("/segments", _segment_form("x", {"tag": "x"}), csrf="x")
    assert created.status_code == 401
    await stranger.aclose()


async def test_sign_in_keeps_the_session_server_side_in_a_secure_http_only_strict_cookie(
    console: Console,
) -> None:
    browser = console.browser()
    response = await browser.sign_in(console.marketer)
    assert response.status_code == 303
    (cookie,) = [c for c in response.headers.get_list("set-cookie") if "console_session=" in c]
    flags = {flag.strip().lower() for flag in cookie.split(";")[1:]}
    assert {"httponly", "secure", "samesite=strict", "path=/"} <= flags
    assert (await browser.get("/segments")).status_code == 200

    session = browser.cookies["console_session"]
    signed_out = await browser.post_form("/sign-out", {})
    assert signed_out.status_code == 303
    browser.cookies["console_session"] = session  # a copy kept from before signing out
    assert (await browser.get("/segments")).status_code == 303
    await browser.aclose()


async def test_a_wrong_password_or_unknown_email_signs_nobody_in(console: Console) -> None:
    for person in (
        Person(console.marketer.email, "not the password", "marketer"),
        Person("nobody@example.com", console.marketer.password, "marketer"),
    ):
        browser = console.browser()
        response = await browser.sign_in(person)
        assert response.status_code == 401
        assert "Wrong email or password." in response.text
        assert "console_session" not in browser.cookies
        await browser.aclose()


async def test_the_sign_in_form_needs_its_own_csrf_token(console: Console) -> None:
    browser = console.browser()
    fields = {"email": console.marketer.email, "password": console.marketer.password}
    response = await browser.post_form("/sign-in", fields, csrf="forged")
    assert response.status_code == 403
    assert "console_session" not in browser.cookies
    await browser.aclose()


async def test_an_analyst_may_look_but_a_change_crafted_by_hand_is_refused(
    console: Console, analyst: ConsoleBrowser
) -> None:
    assert (await analyst.get("/segments")).status_code == 200
    assert (await analyst.get("/audit")).status_code == 200
    name = unique("analyst_made")
    refused = await analyst.post_form("/segments", _segment_form(name, {"tag": "vip"}))
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "forbidden"
    assert name not in await _segment_names(console)
    added = await analyst.post_form(
        "/users", {"email": "x@example.com", "role": "admin", "password": "x" * 20}
    )
    assert added.status_code == 403
    preview = await analyst.post_json("/segments/preview", {"conditions": {"tag": "vip"}})
    assert preview.status_code == 200, preview.text


async def test_a_change_without_the_csrf_token_or_with_a_wrong_one_is_refused(
    console: Console, marketer: ConsoleBrowser
) -> None:
    name = unique("forged")
    for token in ("", "wrong-token"):
        refused = await marketer.post_form(
            "/segments", _segment_form(name, {"tag": "vip"}), csrf=token
        )
        assert refused.status_code == 403, token
        assert refused.json()["error"]["code"] == "csrf_failed"
        preview = await marketer.post_json(
            "/segments/preview", {"conditions": {"tag": "vip"}}, csrf=token
        )
        assert preview.status_code == 403, token
    assert name not in await _segment_names(console)


async def test_a_script_in_a_segment_name_is_shown_as_text(
    console: Console, marketer: ConsoleBrowser
) -> None:
    name = f"<script>alert('{unique('x')}')</script>"
    created = await marketer.post_form("/segments", _segment_form(name, {"tag": "vip"}))
    assert created.status_code == 303, created.text
    escaped = name.replace("<", "&lt;").replace(">", "&gt;").replace("'", "&#39;")
    for page in ("/segments", created.headers["location"], "/audit"):
        response = await marketer.get(page)
        assert escaped in response.text, page
        assert name not in response.text, page
        assert "script-src 'self'" in response.headers["content-security-policy"]


async def test_every_change_is_audited_with_who_and_before_and_after(
    console: Console, marketer: ConsoleBrowser
) -> None:
    first, second = unique("audited"), unique("renamed")
    created = await marketer.post_form("/segments", _segment_form(first, {"tag": "vip"}))
    assert created.status_code == 303, created.text
    segment_id = created.headers["location"].rsplit("/", 1)[-1]
    changed = await marketer.post_form(
        f"/segments/{segment_id}", _segment_form(second, {"tag": "gold"})
    )
    assert changed.status_code == 303, changed.text
    deleted = await marketer.post_form(f"/segments/{segment_id}/delete", {})
    assert deleted.status_code == 303

    rows = await _audit_rows(console, segment_id)
    assert [(row["actor_email"], row["action"]) for row in rows] == [
        (console.marketer.email, "segment.created"),
        (console.marketer.email, "segment.changed"),
        (console.marketer.email, "segment.deleted"),
    ]
    created_row, changed_row, deleted_row = rows
    assert created_row["before"] is None
    assert created_row["after"]["name"] == first
    assert changed_row["before"]["name"] == first
    assert changed_row["before"]["conditions"] == {"tag": "vip"}
    assert changed_row["after"]["name"] == second
    assert changed_row["after"]["conditions"] == {"tag": "gold"}
    assert deleted_row["before"]["name"] == second and deleted_row["after"] is None

    audit = (await marketer.get("/audit")).text
    assert segment_id in audit and first in audit and second in audit


async def test_bad_input_is_refused_naming_the_field(
    console: Console, marketer: ConsoleBrowser
) -> None:
    nameless = await marketer.post_form("/segments", _segment_form("  ", {"tag": "vip"}))
    assert nameless.status_code == 422
    assert 'data-field="name"' in nameless.text
    not_json = await marketer.post_form(
        "/segments", {"name": unique("bad"), "description": "", "conditions": "{"}
    )
    assert not_json.status_code == 422
    assert 'data-field="conditions"' in not_json.text
    wrong_rule = {"all": [{"event": "order_completed", "within": "a month"}]}
    refused = await marketer.post_form("/segments", _segment_form(unique("bad"), wrong_rule))
    assert refused.status_code == 422
    assert 'data-field="conditions.all[0].within"' in refused.text
    preview = await marketer.post_json("/segments/preview", {"conditions": wrong_rule})
    assert preview.status_code == 422
    assert preview.json()["error"]["field"] == "conditions.all[0].within"
    unknown = await marketer.post_json("/segments/preview", {"rule": {}})
    assert unknown.status_code == 422
    assert unknown.json()["error"]["field"] is not None
    missing = await marketer.get("/segments/no_such_segment")
    assert missing.status_code == 404


async def test_the_preview_counts_and_samples_the_profiles_as_the_rule_changes(
    console: Console, marketer: ConsoleBrowser
) -> None:
    plan = unique("plan")
    first, second = sorted(unique("prf_console") for _ in range(2))
    await console.segment.publish(
        profile_updated(first, traits={"plan": plan, "country": "FR"}),
        profile_updated(second, traits={"plan": plan, "country": "DE"}),
    )
    rule: dict[str, Any] = {"all": [{"trait": "plan", "op": "eq", "value": plan}]}

    async def both_counted() -> bool:
        preview = await marketer.post_json("/segments/preview", {"conditions": rule})
        return bool(preview.json().get("count") == 2)

    await wait_for(both_counted, within=90, what="the segment service to store both profiles")
    preview = (await marketer.post_json("/segments/preview", {"conditions": rule})).json()
    assert preview["sample"] == [first, second]
    rule["all"].append({"not": {"trait": "country", "value": "DE"}})
    narrower = (await marketer.post_json("/segments/preview", {"conditions": rule})).json()
    assert (narrower["count"], narrower["sample"]) == (1, [first])


async def test_only_an_admin_adds_people_and_each_addition_is_audited(
    console: Console, marketer: ConsoleBrowser
) -> None:
    assert (await marketer.get("/users")).status_code == 403
    rows = await _audit_rows(console, console.analyst.email)
    assert [(row["actor_email"], row["action"]) for row in rows] == [
        (console.admin.email, "user.added")
    ]
    assert rows[0]["after"] == {"email": console.analyst.email, "role": "analyst"}
    assert "password" not in json.dumps(rows[0]["after"])


async def test_the_command_line_refuses_a_short_password_and_a_taken_email(
    console: Console,
) -> None:
    short, output = await console_command(
        console.command_env, "create-admin", "--email", "new@example.com", password="short"
    )
    assert short == 2 and "password" in output
    taken, output = await console_command(
        console.command_env,
        "create-admin",
        "--email",
        console.admin.email,
        password="another long password",
    )
    assert taken == 1 and "already" in output
