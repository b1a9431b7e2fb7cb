"""The template editor against a real console, content and profile service (and a local server
speaking OpenAI's API for the copy model): saving through the content API with its refusals
next to their fields and every change audited, previews for a person, the bandit's split and
rates, copy suggestions, an analyst refused, and `<script>` kept inert — over HTTP and in
Debian's headless Chromium. Services and the model start once for the module."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import text

from libs.common.db import create_engine
from libs.common.events import IngestIdentify, MessageClicked, MessageSent
from libs.common.settings import Settings
from libs.devstack.stack import Stack
from tests.integration.console.chromium import Page, chromium_page
from tests.integration.console.harness import ConsoleBrowser, Person, staff
from tests.integration.content.harness import FakeChatCompletions, outcome
from tests.integration.profile.harness import ProfileService, running_profile_service, timing
from tests.integration.support import publish, started_service, wait_for

pytestmark = pytest.mark.integration

SCREENSHOTS: Final = Path(__file__).resolve().parents[2] / "output" / "screenshots"
_SUGGESTION: Final = {
    "subject": "{{ profile.traits.first_name }}, your oolong misses you",
    "html": "<p>Come back for 15% off.</p>",
}
# The email a person's preview is shown in; its script would mark the frame if it ran.
_EMAIL_HTML: Final = (
    "<html><head><title>Untouched</title></head><body>"
    "<h1>Hello {{ profile.traits.first_name }}</h1><p>Use {{ coupon_code }}.</p>"
    '<script>document.title = "script ran"; document.body.setAttribute("data-ran", "yes")'
    "</script></body></html>"
)


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


@dataclass
class TemplateConsole:
    url: str
    schema: str
    stack: Stack
    content: httpx.AsyncClient
    profile: ProfileService
    model: FakeChatCompletions
    marketer: Person
    analyst: Person

    def browser(self) -> ConsoleBrowser:
        return ConsoleBrowser(self.url)


@pytest.fixture(scope="module")
def model() -> Iterator[tuple[FakeChatCompletions, str]]:
    fake = FakeChatCompletions({"suggestions": [_SUGGESTION]})
    with fake.serving() as base_url:
        yield fake, base_url


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def console(
    stack: Stack,
    tmp_path_factory: pytest.TempPathFactory,
    model: tuple[FakeChatCompletions, str],
) -> AsyncIterator[TemplateConsole]:
    """A console in front of content and profile, in place of the conftest's: the conftest's
    `marketer` and `analyst` sign in to this one."""
    logs = tmp_path_factory.mktemp("template-console-logs")
    fake, base_url = model
    content_env = {
        "CLOSELOOP_KAFKA_SESSION_TIMEOUT_MS": "6000",
        "CLOSELOOP_CONTENT_LLM_BASE_URL": base_url,
        "CLOSELOOP_CONTENT_LLM_MODEL": "test-model",
    }
    async with (
        running_profile_service(stack, tmp_path_factory) as profile,
        started_service(stack, logs, "content", env=content_env) as (content_process, _),
    ):
        env = {
            "CLOSELOOP_CONSOLE_CONTENT_URL": content_process.url,
            "CLOSELOOP_CONSOLE_PROFILE_URL": profile.process.url,
        }
        async with started_service(stack, logs, "console", env=env) as (process, run):
            command_env = {**stack.env(), "CLOSELOOP_SERVICE_NAME": f"console_{run}"}
            _, marketer, analyst = await staff(command_env, process.url, run)
            async with httpx.AsyncClient(
                base_url=content_process.url,
                headers={"Authorization": f"Bearer {stack.admin_token}"},
                timeout=30,
            ) as content:
                yield TemplateConsole(
                    process.url, f"console_{run}", stack, content, profile, fake, marketer, analyst
                )


def _email_form(name: str, html: str = _EMAIL_HTML, **extra: str) -> dict[str, str]:
    return {
        "channel": "email",
        "name": name,
        "reward": "clicks",
        "holdout_share": "0",
        "defaults": '{"coupon_code": "WELCOME"}',
        "variants.0.id": "a",
        "variants.0.name": "warm",
        "variants.0.subject": "Hi {{ profile.traits.first_name }}",
        "variants.0.html": html,
        "variants.0.text": "",
        "variants.1.id": "b",
        "variants.1.name": "short",
        "variants.1.subject": "{{ profile.traits.first_name }}, tea?",
        "variants.1.html": "<p>Tea, {{ profile.traits.first_name }}?</p>",
        **extra,
    }


async def _created(browser: ConsoleBrowser, form: dict[str, str]) -> str:
    response = await browser.post_form("/templates", form)
    assert response.status_code == 303, response.text
    location = str(response.headers["location"])
    return location.rsplit("/", 1)[-1]


async def _person(console: TemplateConsole, **traits: Any) -> str:
    """A person the profile service knows by email, with these traits; their email."""
    email = f"{unique('mei')}@example.org"
    call = IngestIdentify(
        messageId=unique("identify"),
        userId=unique("u"),
        traits={"email": email, **traits},
        **timing(0),
    )
    await console.profile.publish(call)
    await console.profile.wait_for_profile(f"email:{email}", within=60)
    return email


async def _audit(console: TemplateConsole, target: str) -> list[dict[str, Any]]:
    engine = create_engine(Settings(database_url=console.stack.database_url))
    try:
        async with engine.connect() as connection:
            result = await connection.execute(
                text(
                    f"SELECT actor_email, action, before, after FROM {console.schema}.audit_log "
                    "WHERE target = :target ORDER BY id"
                ),
                {"target": target},
            )
            return [dict(row._mapping) for row in result]
    finally:
        await engine.dispose()


async def test_a_marketer_creates_and_changes_a_template_and_each_change_is_audited(
    console: TemplateConsole, marketer: ConsoleBrowser
) -> None:
    template_id = await _created(marketer, _email_form(unique("Welcome")))
    page = await marketer.get(f"/templates/{template_id}")
    assert page.status_code == 200
    assert 'name="variants.1.html"' in page.text  # both variants, side by side

    changed = _email_form("Welcome back", **{"variants.1.subject": "Still there?"})
    saved = await marketer.post_form(f"/templates/{template_id}", changed)
    assert saved.status_code == 303, saved.text
    stored = (await console.content.get(f"/templates/{template_id}")).json()
    assert stored["version"] == 2 and stored["name"] == "Welcome back"
    assert [v["subject"] for v in stored["variants"]][1] == "Still there?"

    deleted = await marketer.post_form(f"/templates/{template_id}/delete", {})
    assert deleted.status_code == 303
    assert (await console.content.get(f"/templates/{template_id}")).status_code == 404
    rows = await _audit(console, template_id)
    assert [(row["actor_email"], row["action"]) for row in rows] == [
        (console.marketer.email, "template.created"),
        (console.marketer.email, "template.changed"),
        (console.marketer.email, "template.deleted"),
    ]
    created, change, deletion = rows
    assert created["before"] is None and created["after"]["version"] == 1
    assert change["before"]["variants"][1]["subject"] == "{{ profile.traits.first_name }}, tea?"
    assert change["after"]["variants"][1]["subject"] == "Still there?"
    assert change["after"]["version"] == 2
    assert deletion["before"]["name"] == "Welcome back" and deletion["after"] is None


async def test_a_refusal_from_content_is_shown_next_to_the_field_it_names(
    console: TemplateConsole, marketer: ConsoleBrowser
) -> None:
    template_id = await _created(marketer, _email_form(unique("Refused")))
    broken = _email_form("Refused", **{"variants.1.html": "{% if x %}never closed"})
    refused = await marketer.post_form(f"/templates/{template_id}", broken)
    assert refused.status_code == 422
    # The message sits right after the source it is about, which points at it.
    source = re.search(r'<textarea id="variants\.1\.html"[^>]*>', refused.text)
    assert source is not None and 'aria-describedby="error-variants.1.html"' in source.group(0)
    after = refused.text[source.end() :]
    assert after.index('id="error-variants.1.html"') < after.index("<textarea")
    assert 'data-field="variants.1.html"' in refused.text
    assert "never closed" in refused.text  # what was typed is kept

    not_json = await marketer.post_form(
        f"/templates/{template_id}", _email_form("Refused", defaults="{oops")
    )
    assert not_json.status_code == 422
    assert 'id="error-defaults" data-field="defaults"' in not_json.text
    nameless = await marketer.post_form("/templates", _email_form(""))
    assert nameless.status_code == 422
    assert 'data-field="body.name"' in nameless.text and 'id="error-name"' in nameless.text
    stored = (await console.content.get(f"/templates/{template_id}")).json()
    assert stored["version"] == 1


async def test_an_analyst_may_look_and_preview_but_not_change(
    console: TemplateConsole, marketer: ConsoleBrowser, analyst: ConsoleBrowser
) -> None:
    template_id = await _created(marketer, _email_form(unique("Looked at")))
    page = await analyst.get(f"/templates/{template_id}")
    assert page.status_code == 200
    assert 'id="save-template"' not in page.text and 'id="suggest-form"' not in page.text
    for path, form in (
        (f"/templates/{template_id}", _email_form("Analyst made")),
        (f"/templates/{template_id}/delete", {}),
        ("/templates", _email_form("Analyst made")),
    ):
        refused = await analyst.post_form(path, form)
        assert refused.status_code == 403, path
        assert refused.json()["error"]["code"] == "forbidden"
    suggestions = await analyst.post_json("/copy/suggestions", {"channel": "email", "brief": "tea"})
    assert suggestions.status_code == 403
    stored = (await console.content.get(f"/templates/{template_id}")).json()
    assert stored["version"] == 1 and stored["name"] != "Analyst made"
    assert await _audit(console, template_id) == [
        {
            "actor_email": console.marketer.email,
            "action": "template.created",
            "before": None,
            "after": await _definition(console, template_id),
        }
    ]
    email = await _person(console, first_name="Ana")
    preview = await analyst.post_json(
        f"/templates/{template_id}/preview",
        {"profile": email, "variables": {"coupon_code": "TEA10"}},
    )
    assert preview.status_code == 200, preview.text
    assert preview.json()["fields"]["subject"] == "Hi Ana"


async def _definition(console: TemplateConsole, template_id: str) -> dict[str, Any]:
    stored = (await console.content.get(f"/templates/{template_id}")).json()
    keys = ("id", "name", "channel", "version", "defaults", "variants", "reward", "holdout_share")
    return {key: stored[key] for key in (*keys, "topic", "transactional")}


async def test_a_preview_renders_the_persons_facts_and_names_what_it_cannot_find(
    console: TemplateConsole, marketer: ConsoleBrowser
) -> None:
    template_id = await _created(marketer, _email_form(unique("Previewed")))
    email = await _person(console, first_name="Mei", plan="gold")
    path = f"/templates/{template_id}/preview"
    answer = await marketer.post_json(
        path, {"profile": email, "variant_id": "b", "variables": {"coupon_code": "TEA10"}}
    )
    assert answer.status_code == 200, answer.text
    preview = answer.json()
    assert preview["variant_id"] == "b" and preview["channel"] == "email"
    assert preview["fields"]["html"] == "<p>Tea, Mei?</p>"
    assert preview["profile_id"].startswith("prf_") and preview["sms"] is None
    by_id = await marketer.post_json(path, {"profile": preview["profile_id"], "variant_id": "b"})
    assert by_id.json()["fields"]["subject"] == "Mei, tea?"

    for body, status, field in (
        ({"profile": "nobody@example.org"}, 404, "profile"),
        ({"profile": "prf_unknown"}, 404, "profile"),
        ({"profile": "shoe_size:42"}, 422, "profile"),
        ({"profile": "  "}, 422, "profile"),
        ({}, 422, "body.profile"),
        ({"profile": email, "variables": {}}, 422, "variables"),  # coupon_code is not defined
        ({"profile": email, "variant_id": "z"}, 404, "variant_id"),
        ({"profile": email, "variables": "x"}, 422, "body.variables"),
    ):
        refused = await marketer.post_json(path, body)
        assert refused.status_code == status, (body, refused.text)
        assert refused.json()["error"]["field"] == field, body
    no_csrf = await marketer.post_json(path, {"profile": email}, csrf="")
    assert no_csrf.status_code == 403


async def test_an_sms_preview_counts_its_characters_and_messages(
    console: TemplateConsole, marketer: ConsoleBrowser
) -> None:
    form = {
        "channel": "sms",
        "name": unique("Sms"),
        "variants.0.id": "a",
        "variants.0.text": "Hi {{ profile.traits.first_name }}! " + "Tea is waiting. " * 10,
        "variants.1.id": "b",
        "variants.1.text": "{{ profile.traits.first_name }} 您的茶在等您",
    }
    template_id = await _created(marketer, form)
    email = await _person(console, first_name="Li")
    path = f"/templates/{template_id}/preview"
    long = (await marketer.post_json(path, {"profile": email, "variant_id": "a"})).json()
    assert long["fields"]["text"] == "Hi Li! " + "Tea is waiting. " * 10
    assert long["sms"] == {
        "encoding": "GSM-7",
        "characters": 167,
        "segments": 2,
        "per_segment": 153,
    }
    chinese = (await marketer.post_json(path, {"profile": email, "variant_id": "b"})).json()
    assert chinese["fields"]["text"] == "Li 您的茶在等您"
    assert chinese["sms"] == {
        "encoding": "UCS-2",
        "characters": 9,
        "segments": 1,
        "per_segment": 70,
    }


async def test_a_script_in_a_template_or_a_trait_is_shown_as_text(
    console: TemplateConsole, marketer: ConsoleBrowser
) -> None:
    name = f"<script>alert('{unique('x')}')</script>"
    template_id = await _created(marketer, _email_form(name))
    escaped = name.replace("<", "&lt;").replace(">", "&gt;").replace("'", "&#39;")
    for path in ("/templates", f"/templates/{template_id}", "/audit"):
        page = await marketer.get(path)
        assert escaped in page.text, path
        assert name not in page.text, path
        assert "script-src 'self';" in page.headers["content-security-policy"], path
    editor_page = (await marketer.get(f"/templates/{template_id}")).text
    assert "&lt;script&gt;document.title" in editor_page  # the email's own script, as text
    assert "<script>document.title" not in editor_page

    email = await _person(console, first_name="<script>alert(1)</script>")
    preview = await marketer.post_json(
        f"/templates/{template_id}/preview", {"profile": email, "variant_id": "b"}
    )
    assert preview.json()["fields"]["html"] == "<p>Tea, &lt;script&gt;alert(1)&lt;/script&gt;?</p>"


async def test_copy_suggestions_come_from_the_model_through_content(
    console: TemplateConsole, marketer: ConsoleBrowser
) -> None:
    answer = await marketer.post_json(
        "/copy/suggestions", {"channel": "email", "brief": "win back tea buyers", "count": 2}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["source"] == "llm"
    assert [s["fields"] for s in answer.json()["suggestions"]] == [_SUGGESTION]
    assert console.model.requests[-1]["messages"][-1]["content"] == "win back tea buyers"
    empty = await marketer.post_json("/copy/suggestions", {"channel": "email", "brief": ""})
    assert empty.status_code == 422 and empty.json()["error"]["field"] == "body.brief"


async def test_a_marketer_previews_a_template_in_the_browser_and_sees_the_split(
    console: TemplateConsole, marketer: ConsoleBrowser
) -> None:
    template_id = await _created(marketer, _email_form("Tea is waiting"))
    email = await _person(console, first_name="Mei")
    await _sends_and_clicks(console, template_id, {"a": (12, 5), "b": (10, 1)})
    base = console.url.replace("127.0.0.1", "localhost")  # Secure cookies: localhost only

    async with chromium_page() as page:
        await page.goto(f"{base}/templates/{template_id}")
        await page.type("input[name=email]", console.marketer.email)
        await page.type("input[name=password]", console.marketer.password)
        await page.click("form[action='/sign-in'] button[type=submit]")
        await page.wait_for_element("#preview-form")
        assert await page.path() == f"/templates/{template_id}"

        # The sources are highlighted, and the email's own script is text in the editor.
        shadow = "document.querySelector('.liquid.highlighted pre.liquid-shadow')"
        assert "<script>document.title" in await page.evaluate(
            "document.getElementById('variants.0.html').parentNode.textContent"
        )
        assert await page.evaluate(f"{shadow}.querySelectorAll('.lq-output').length") == 1
        assert await page.evaluate("document.querySelectorAll('#variants script').length") == 0

        await page.type("#preview-profile", email)
        await page.evaluate("document.getElementById('preview-variables').value = '{}'")
        await page.click("#preview-button")
        message = await _shown_error(page)
        assert "coupon_code" in message  # strict: the variable is named
        await page.evaluate(
            "document.getElementById('preview-variables').value = '{\"coupon_code\": \"TEA10\"}'"
        )
        await page.click("#preview-button")
        await page.wait_for_text("#preview-subject", "Hi Mei")

        frame = await _frame_document(page, "preview-email")
        assert "Hello Mei" in _text(frame) and "Use TEA10." in _text(frame)
        # Sandboxed, with no permission at all: the email's script did not run.
        assert (
            await page.evaluate("document.getElementById('preview-email').getAttribute('sandbox')")
            == ""
        )
        assert _title(frame) == "Untouched"
        assert "data-ran" not in _attributes(frame, "BODY")

        legend = await page.text("#split-legend")
        assert "a " in legend and "b " in legend and "%" in legend
        rates = await page.text("#variant-rates tr[data-variant=a]")
        assert "12.0" in rates and "5.0" in rates and "41.7 %" in rates
        await _viewport(page, 1280, 1800)
        await page.screenshot(SCREENSHOTS / "console-template-editor.png")
        await _suggestion_used_in_a_new_variant(page)
        await _viewport(page, 768, 1024)  # a tablet: nothing wider than the screen
        assert await page.evaluate("document.documentElement.scrollWidth") <= 768
        await page.screenshot(SCREENSHOTS / "console-template-editor-tablet.png")


async def _suggestion_used_in_a_new_variant(page: Page) -> None:
    """The model's suggestion, asked for on the page, fills a new variant column (`c`), whose
    inputs are named for the content service and whose sources are highlighted."""
    await page.type("#suggest-brief", "win back tea buyers")
    await page.click("#suggest-button")
    await page.wait_for_element("#suggestions .use-suggestion")
    assert _SUGGESTION["subject"] in await page.text("#suggestions")
    await page.click("#suggestions .use-suggestion")
    column = "#variants .variant:last-child"
    await page.wait_for_element(f"{column} .liquid.highlighted")
    assert await page.evaluate(f"document.querySelector('{column} .variant-id').value") == "c"
    subject = f"document.querySelector('{column} textarea[data-field=subject]')"
    assert await page.evaluate(f"{subject}.name") == "variants.2.subject"
    assert await page.evaluate(f"{subject}.value") == _SUGGESTION["subject"]
    assert await page.evaluate("document.activeElement.classList.contains('variant-id')")


async def _viewport(page: Page, width: int, height: int) -> None:
    await page.send(
        "Emulation.setDeviceMetricsOverride",
        width=width,
        height=height,
        deviceScaleFactor=1,
        mobile=False,
    )
    await page.evaluate("window.scrollTo(0, 0)")


async def _sends_and_clicks(
    console: TemplateConsole, template_id: str, counts: dict[str, tuple[int, int]]
) -> None:
    """Sends and clicks of each variant, as dispatch reports them; once content counted them."""
    events = []
    for variant_id, (sends, clicks) in counts.items():
        messages = [unique("msg") for _ in range(sends)]
        events += [outcome(MessageSent, template_id, variant_id, m) for m in messages]
        events += [
            outcome(MessageClicked, template_id, variant_id, m, url="https://shop.example.com")
            for m in messages[:clicks]
        ]
    await publish(console.stack.kafka_bootstrap, events)

    async def counted() -> bool:
        answer = (await console.content.get(f"/templates/{template_id}/variants")).json()
        sent = {v["variant_id"]: round(v["sends"]) for v in answer["variants"]}
        clicked = {v["variant_id"]: round(v["clicks"]) for v in answer["variants"]}
        return all(sent[v] == s and clicked[v] == c for v, (s, c) in counts.items())

    await wait_for(counted, within=90, what="content to count the sends and clicks")


async def _shown_error(page: Page) -> str:
    async def shown() -> bool:
        return bool(await page.evaluate("!document.getElementById('preview-error').hidden"))

    await wait_for(shown, within=30, what="the preview's refusal")
    return await page.text("#preview-error")


async def _frame_document(page: Page, frame_id: str) -> dict[str, Any]:
    """The document inside the iframe, read through DevTools (the page's own scripts cannot
    reach into a sandboxed frame), once it holds text. Chromium runs a sandboxed frame in a
    process of its own: its document is then read in the frame's own session."""
    found: dict[str, Any] = {}
    sessions: dict[str, str] = {}

    async def loaded() -> bool:
        document = await page.send("DOM.getDocument", depth=-1, pierce=True)
        frame = _find(document["root"], lambda node: _is_frame(node, frame_id))
        assert frame is not None, f"no iframe #{frame_id}"
        inner = frame.get("contentDocument")
        if inner is None:
            session = await _frame_session(page, frame["frameId"], sessions)
            if session is None:
                return False
            framed = await page.send("DOM.getDocument", session_id=session, depth=-1)
            inner = framed["root"]
        if not _text(inner).strip():
            return False
        found.update(inner)
        return True

    await wait_for(loaded, within=30, what=f"the document in #{frame_id}")
    return found


async def _frame_session(page: Page, target: str, sessions: dict[str, str]) -> str | None:
    """The DevTools session of an out-of-process frame, attached automatically once asked."""
    if not sessions:
        await page.send(
            "Target.setAutoAttach", autoAttach=True, waitForDebuggerOnStart=False, flatten=True
        )
    for event in page.events:
        if event.get("method") == "Target.attachedToTarget":
            attached = event["params"]
            sessions[attached["targetInfo"]["targetId"]] = attached["sessionId"]
    return sessions.get(target)


def _is_frame(node: dict[str, Any], frame_id: str) -> bool:
    attributes = node.get("attributes", [])
    pairs = dict(zip(attributes[::2], attributes[1::2], strict=True))
    return bool(node.get("nodeName") == "IFRAME" and pairs.get("id") == frame_id)


def _children(node: dict[str, Any]) -> list[dict[str, Any]]:
    inner = [node["contentDocument"]] if "contentDocument" in node else []
    return [*node.get("children", []), *inner]


def _find(node: dict[str, Any], wanted: Any) -> dict[str, Any] | None:
    if wanted(node):
        return node
    for child in _children(node):
        found = _find(child, wanted)
        if found is not None:
            return found
    return None


def _text(node: dict[str, Any]) -> str:
    own = node.get("nodeValue", "") if node.get("nodeType") == 3 else ""
    return own + "".join(_text(child) for child in _children(node))


def _title(document: dict[str, Any]) -> str:
    title = _find(document, lambda node: node.get("nodeName") == "TITLE")
    return "" if title is None else _text(title)


def _attributes(document: dict[str, Any], name: str) -> list[str]:
    element = _find(document, lambda node: node.get("nodeName") == name)
    return [] if element is None else list(element.get("attributes", [])[::2])
