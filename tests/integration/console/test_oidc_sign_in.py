"""Single sign-on through a local OpenID Connect provider: a console user signs in to the same
server-side session a password opens; a wrong state, another browser, a replayed callback, a
wrong nonce, a bad signature, a wrong PKCE verifier or an unknown email signs nobody in."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from libs.devstack.stack import Stack
from tests.integration.console.harness import ConsoleBrowser, console_command
from tests.integration.console.oidc_provider import (
    CLIENT_ID,
    CLIENT_SECRET,
    FakeOidcProvider,
    running_oidc_provider,
)
from tests.integration.support import started_service

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


@dataclass
class SingleSignOn:
    url: str
    provider: FakeOidcProvider
    analyst: str
    # A second console, which lets the provider's people in as new analysts.
    welcoming_url: str
    welcoming_schema: str

    def browser(self, url: str | None = None) -> ConsoleBrowser:
        return ConsoleBrowser(url or self.url)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def sso(
    stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[SingleSignOn]:
    logs = tmp_path_factory.mktemp("console-oidc-logs")
    async with running_oidc_provider() as provider, contextlib.AsyncExitStack() as running:
        env = {
            "CLOSELOOP_CONSOLE_OIDC_ISSUER": provider.base_url,
            "CLOSELOOP_CONSOLE_OIDC_CLIENT_ID": CLIENT_ID,
            "CLOSELOOP_CONSOLE_OIDC_CLIENT_SECRET": CLIENT_SECRET,
        }
        welcoming = {**env, "CLOSELOOP_CONSOLE_OIDC_CREATES_ANALYSTS": "true"}
        (process, run), (other, other_run) = await asyncio.gather(
            running.enter_async_context(started_service(stack, logs, "console", env=env)),
            running.enter_async_context(started_service(stack, logs, "console", env=welcoming)),
        )
        command_env = {**stack.env(), "CLOSELOOP_SERVICE_NAME": f"console_{run}"}
        analyst = f"Ana.Lyst-{run}@Example.com"
        code, output = await console_command(
            command_env,
            "create-user",
            "--email",
            analyst,
            "--role",
            "analyst",
            password="a password nobody types",
        )
        assert code == 0, output
        yield SingleSignOn(
            process.url, provider, analyst.lower(), other.url, f"console_{other_run}"
        )


async def _sign_in(
    browser: ConsoleBrowser, *, challenge: str | None = None, state: str | None = None
) -> httpx.Response:
    """Start at the console, go through the provider as a browser would, and come back to the
    console's callback: its answer. `challenge` or `state` replace the real ones on the way."""
    started = await browser.get("/sign-in/oidc?next=/audit")
    assert started.status_code == 303, started.text
    authorize = urlsplit(started.headers["location"])
    asked = dict(parse_qsl(authorize.query))
    assert (asked["code_challenge_method"], asked["response_type"]) == ("S256", "code")
    if challenge is not None:
        asked["code_challenge"] = challenge
    async with httpx.AsyncClient(follow_redirects=False) as http:
        answered = await http.get(authorize._replace(query=urlencode(asked)).geturl())
    assert answered.status_code == 302, answered.text
    back = urlsplit(answered.headers["location"])
    returned = dict(parse_qsl(back.query))
    if state is not None:
        returned["state"] = state
    return await browser.get(f"{back.path}?{urlencode(returned)}")


def _signed_in(browser: ConsoleBrowser) -> bool:
    return "console_session" in browser.cookies


async def test_a_console_user_signs_in_through_the_provider_into_a_console_session(
    sso: SingleSignOn,
) -> None:
    browser = sso.browser()
    sso.provider.tamper, sso.provider.signs_in = None, sso.analyst.upper()
    form = await browser.get("/sign-in")
    assert 'href="/sign-in/oidc?next=' in form.text

    answer = await _sign_in(browser)
    assert answer.status_code == 200, answer.text
    assert 'content="0;url=/audit"' in answer.text
    assert _signed_in(browser)
    session = [c for c in answer.headers.get_list("set-cookie") if "console_session=" in c]
    assert "samesite=strict" in session[0].lower() and "httponly" in session[0].lower()
    audit = await browser.get("/audit")
    assert audit.status_code == 200
    assert f"{sso.analyst} (analyst)" in audit.text
    # Roles stay the console's: this analyst may not change anything.
    refused = await browser.post_form("/users", {"email": "x@example.com", "role": "admin"})
    assert refused.status_code == 403
    await browser.aclose()


@pytest.mark.parametrize("tamper", ["nonce", "signature"])
async def test_a_token_with_a_wrong_nonce_or_a_bad_signature_signs_nobody_in(
    sso: SingleSignOn, tamper: str
) -> None:
    browser = sso.browser()
    sso.provider.signs_in = sso.analyst
    sso.provider.tamper = "nonce" if tamper == "nonce" else "signature"
    try:
        answer = await _sign_in(browser)
    finally:
        sso.provider.tamper = None
    assert answer.status_code == 403
    assert ("nonce" if tamper == "nonce" else "signature") in answer.text
    assert not _signed_in(browser)
    assert (await browser.get("/audit")).status_code == 303
    await browser.aclose()


async def test_a_wrong_pkce_verifier_is_refused_by_the_provider_and_signs_nobody_in(
    sso: SingleSignOn,
) -> None:
    """The code was issued for another challenge: the console's verifier does not match it."""
    browser = sso.browser()
    sso.provider.signs_in = sso.analyst
    refused_before = sso.provider.refused_tokens
    answer = await _sign_in(browser, challenge="E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM")
    assert answer.status_code == 403
    assert sso.provider.refused_tokens == refused_before + 1
    assert not _signed_in(browser)
    await browser.aclose()


async def test_a_wrong_state_another_browser_or_a_replayed_callback_signs_nobody_in(
    sso: SingleSignOn,
) -> None:
    sso.provider.signs_in = sso.analyst
    browser = sso.browser()
    answer = await _sign_in(browser, state="a-state-the-console-never-gave")
    assert answer.status_code == 403
    assert not _signed_in(browser)

    # The real callback, taken to another browser (no cookie tying it to the one that began).
    started = await browser.get("/sign-in/oidc")
    async with httpx.AsyncClient(follow_redirects=False) as http:
        back = (await http.get(started.headers["location"])).headers["location"]
    callback = urlsplit(back)
    stranger = sso.browser()
    stolen = await stranger.get(f"{callback.path}?{callback.query}")
    assert stolen.status_code == 403
    assert not _signed_in(stranger)
    # A state is good once: the first browser cannot use it now either.
    replayed = await browser.get(f"{callback.path}?{callback.query}")
    assert replayed.status_code == 403
    assert not _signed_in(browser)
    await browser.aclose()
    await stranger.aclose()


async def test_an_email_no_console_user_has_is_refused(sso: SingleSignOn) -> None:
    browser = sso.browser()
    sso.provider.signs_in = "someone.else@example.com"
    answer = await _sign_in(browser)
    assert answer.status_code == 403
    assert "someone.else@example.com" in answer.text
    assert not _signed_in(browser)
    await browser.aclose()


async def test_a_console_that_welcomes_the_providers_people_adds_them_as_analysts(
    sso: SingleSignOn, stack: Stack
) -> None:
    newcomer = f"new.person.{uuid.uuid4().hex[:8]}@example.com"
    browser = sso.browser(sso.welcoming_url)
    sso.provider.tamper, sso.provider.signs_in = None, newcomer
    answer = await _sign_in(browser)
    assert answer.status_code == 200, answer.text
    assert _signed_in(browser)
    audit = await browser.get("/audit")
    assert f"{newcomer} (analyst)" in audit.text
    assert "user.added" in audit.text and "oidc" in audit.text
    refused = await browser.post_form("/segments", {"name": "x", "conditions": "{}"})
    assert refused.status_code == 403
    # Signing in again finds the same person, not a second one.
    await browser.aclose()
    again = sso.browser(sso.welcoming_url)
    assert (await _sign_in(again)).status_code == 200
    engine = create_async_engine(stack.database_url)
    try:
        async with engine.connect() as connection:
            people = await connection.execute(
                text(f"SELECT role FROM {sso.welcoming_schema}.users WHERE email = :e"),
                {"e": newcomer},
            )
            assert [row.role for row in people] == ["analyst"]
    finally:
        await engine.dispose()
    await again.aclose()
