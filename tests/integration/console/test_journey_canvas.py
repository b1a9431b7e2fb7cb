"""The journey canvas over a real console, journey, profile and ingest: in Debian's headless
Chromium a marketer builds entry -> send -> wait_for click -> branch by dragging and connecting
nodes, sees the service's 422 on the node it names, publishes, and watches the node stats move
as tracked events arrive; over HTTP, the roles, CSRF, escaping, bad input and the audit log.
Screenshots go to tests/output/screenshots/ (kept by CI, ignored by git)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final

import pytest
import pytest_asyncio
from sqlalchemy import text

from libs.common.db import create_engine
from libs.common.settings import Settings
from libs.devstack.stack import Stack
from tests.integration.console.chromium import Page, chromium_page
from tests.integration.console.harness import ConsoleBrowser
from tests.integration.console.journey_stack import JourneyConsole, running_journey_console
from tests.integration.support import wait_for

pytestmark = pytest.mark.integration

SCREENSHOTS: Final = Path(__file__).resolve().parents[2] / "output" / "screenshots"
_ENTRY: Final = ".drawflow-node[data-kind=entry]"


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def _node(node_id: str) -> str:
    return f".drawflow-node[data-node-id={json.dumps(node_id)}]"


def _draft(name: str, definition: dict[str, Any], **layout: Any) -> dict[str, Any]:
    return {"name": name, "description": "", "definition": definition, "layout": layout}


def _one_send(event: str, template: str = "tpl_hello") -> dict[str, Any]:
    return {
        "entry": {"event": event},
        "start": "hello",
        "nodes": {"hello": {"type": "send", "channel": "email", "template_id": template}},
    }


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def canvas(
    stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[JourneyConsole]:
    async with running_journey_console(stack, tmp_path_factory.mktemp("canvas-logs")) as running:
        yield running


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def marketer(canvas: JourneyConsole) -> AsyncIterator[ConsoleBrowser]:
    browser = await canvas.browser(canvas.marketer)
    yield browser
    await browser.aclose()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def analyst(canvas: JourneyConsole) -> AsyncIterator[ConsoleBrowser]:
    browser = await canvas.browser(canvas.analyst)
    yield browser
    await browser.aclose()


async def _audit_rows(canvas: JourneyConsole, target: str) -> list[dict[str, Any]]:
    engine = create_engine(Settings(database_url=canvas.stack.database_url))
    try:
        async with engine.connect() as connection:
            result = await connection.execute(
                text(
                    f"SELECT actor_email, action, before, after FROM {canvas.schema}.audit_log "
                    "WHERE target = :target ORDER BY id"
                ),
                {"target": target},
            )
            return [dict(row._mapping) for row in result]
    finally:
        await engine.dispose()


async def _canvas_state(browser: ConsoleBrowser, journey_id: str) -> dict[str, Any]:
    """What the canvas page hands its script: the journey, its draft, its layout."""
    page = (await browser.get(f"/journeys/{journey_id}")).text
    state: dict[str, Any] = json.loads(
        page.split('id="journey-state">', 1)[1].split("</script>", 1)[0]
    )
    return state


async def _journey_ids(canvas: JourneyConsole) -> list[str]:
    listed = (await canvas.journey.get("/journeys")).json()["journeys"]
    return [journey["id"] for journey in listed]


async def test_changes_are_audited_with_before_and_after_and_the_layout_is_kept(
    canvas: JourneyConsole, marketer: ConsoleBrowser
) -> None:
    event = unique("Signed Up")
    layout = {"entry": {"x": 10, "y": 20}, "nodes": {"hello": {"x": 300, "y": 40}}}
    created = await marketer.post_json("/journeys", _draft("Welcome", _one_send(event), **layout))
    assert created.status_code == 201, created.text
    journey_id = created.json()["id"]
    assert created.json()["status"] == "draft"
    assert (await _canvas_state(marketer, journey_id))["layout"] == layout
    changed = await marketer.post_json(
        f"/journeys/{journey_id}", _draft("Welcome again", _one_send(event, "tpl_other"))
    )
    assert changed.status_code == 200, changed.text
    for action, status in (("publish", "active"), ("pause", "paused"), ("resume", "active")):
        acted = await marketer.post_json(f"/journeys/{journey_id}/{action}", None)
        assert acted.status_code == 200, acted.text
        assert acted.json()["status"] == status

    rows = await _audit_rows(canvas, journey_id)
    assert [(row["actor_email"], row["action"]) for row in rows] == [
        (canvas.marketer.email, "journey.created"),
        (canvas.marketer.email, "journey.changed"),
        (canvas.marketer.email, "journey.published"),
        (canvas.marketer.email, "journey.paused"),
        (canvas.marketer.email, "journey.resumed"),
    ]
    created_row, changed_row, published_row, paused_row, _ = rows
    assert created_row["before"] is None
    assert created_row["after"]["draft"] == _one_send(event)
    assert changed_row["before"]["name"] == "Welcome"
    assert changed_row["after"]["name"] == "Welcome again"
    assert changed_row["after"]["draft"]["nodes"]["hello"]["template_id"] == "tpl_other"
    assert published_row["before"]["published_version"] is None
    assert published_row["after"]["published_version"] == 1
    assert (paused_row["before"]["status"], paused_row["after"]["status"]) == ("active", "paused")

    assert (await _canvas_state(marketer, journey_id))["definition"] == _one_send(
        event, "tpl_other"
    )
    listed = (await marketer.get("/journeys")).text
    assert f'data-journey-id="{journey_id}"' in listed and "Welcome again" in listed


async def test_an_analyst_sees_the_canvas_read_only_and_every_change_is_refused(
    canvas: JourneyConsole, marketer: ConsoleBrowser, analyst: ConsoleBrowser
) -> None:
    created = await marketer.post_json("/journeys", _draft("Looked at", _one_send(unique("e"))))
    journey_id = created.json()["id"]
    page = await analyst.get(f"/journeys/{journey_id}")
    assert page.status_code == 200
    assert 'id="save-journey"' not in page.text and 'id="palette"' not in page.text
    assert '"can_edit": false' in page.text
    assert '<fieldset class="journey-fields" disabled>' in page.text

    before = await _journey_ids(canvas)
    refused = [
        await analyst.post_json("/journeys", _draft("Mine", _one_send(unique("e")))),
        await analyst.post_json(f"/journeys/{journey_id}", _draft("Mine", _one_send("x"))),
        await analyst.post_json(f"/journeys/{journey_id}/publish", None),
    ]
    assert [response.status_code for response in refused] == [403, 403, 403]
    assert {response.json()["error"]["code"] for response in refused} == {"forbidden"}
    assert await _journey_ids(canvas) == before
    stored = (await canvas.journey.get(f"/journeys/{journey_id}")).json()
    assert (stored["name"], stored["status"]) == ("Looked at", "draft")
    # Checking a graph changes nothing, so an analyst may.
    checked = await analyst.post_json("/journeys/validate", {"definition": _one_send("e")})
    assert checked.status_code == 200, checked.text


async def test_a_change_without_the_csrf_token_is_refused(
    canvas: JourneyConsole, marketer: ConsoleBrowser
) -> None:
    before = await _journey_ids(canvas)
    for token in ("", "not-the-token"):
        refused = await marketer.post_json(
            "/journeys", _draft("Forged", _one_send(unique("e"))), csrf=token
        )
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "csrf_failed"
    assert await _journey_ids(canvas) == before


async def test_a_script_in_a_journey_name_is_shown_as_text(
    canvas: JourneyConsole, marketer: ConsoleBrowser
) -> None:
    name = "<script>alert('journey')</script>"
    created = await marketer.post_json("/journeys", _draft(name, _one_send(unique("e"))))
    assert created.status_code == 201, created.text
    for path in ("/journeys", f"/journeys/{created.json()['id']}", "/audit"):
        page = (await marketer.get(path)).text
        assert "<script>alert(" not in page, path
        assert "&lt;script&gt;alert(" in page or "\\u003cscript\\u003e" in page, path


async def test_bad_input_is_refused_naming_the_field(
    canvas: JourneyConsole, marketer: ConsoleBrowser
) -> None:
    good = _one_send(unique("e"))
    bad_send = {**good, "nodes": {"hello": {"type": "send", "channel": "email"}}}
    cases = [
        (_draft(" ", good), "body.name"),
        ({**_draft("x", good), "definition": {**good, "colour": "red"}}, "body.definition.colour"),
        (_draft("x", good, nodes={"hello": {"x": 1e12, "y": 0}}), "body.layout.nodes.hello.x"),
        (_draft("x", bad_send), "nodes.hello.template_id"),
    ]
    before = await _journey_ids(canvas)
    for body, field in cases:
        refused = await marketer.post_json("/journeys", body)
        assert refused.status_code == 422, (field, refused.text)
        assert refused.json()["error"]["field"] == field
    checked = await marketer.post_json("/journeys/validate", {"definition": bad_send})
    assert checked.status_code == 422
    assert checked.json()["error"]["field"] == "nodes.hello.template_id"
    assert (await marketer.post_json("/journeys/jrn_x/explode", None)).status_code == 422
    assert await _journey_ids(canvas) == before


async def test_a_marketer_builds_publishes_and_watches_a_journey_on_the_canvas(
    canvas: JourneyConsole,
) -> None:
    entry_event, click_event = unique("Trial Started"), unique("Link Clicked")
    name = f"Trial follow-up {uuid.uuid4().hex[:6]}"
    base = canvas.console.url.replace("127.0.0.1", "localhost")
    async with chromium_page() as page:
        await page.goto(f"{base}/journeys/new")
        await page.type("input[name=email]", canvas.marketer.email)
        await page.type("input[name=password]", canvas.marketer.password)
        await page.click("form[action='/sign-in'] button[type=submit]")
        await _arrived(page, "/journeys/new")
        assert await _round_trips(page)

        await page.type("#journey-name", name)
        await page.click(f"{_ENTRY} .node-summary")
        await page.type('#node-form [data-path="entry.event"]', entry_event)
        await _drop(page, "send", 320, 60)
        await _connect(page, f"{_ENTRY} .output_1", f"{_node('send_1')} .input_1")
        # A send with no template yet: the journey service's 422, shown on that node.
        await _shown_on(page, "send_1", "nodes.send_1.template_id")
        await page.screenshot(SCREENSHOTS / "console-journey-invalid.png")

        await page.click(f"{_node('send_1')} .node-summary")
        await page.type("#node-form [data-path=template_id]", "tpl_welcome")
        await _drop(page, "wait_for", 540, 60)
        await _connect(page, f"{_node('send_1')} .output_1", f"{_node('wait_for_1')} .input_1")
        await page.type("#node-form [data-path=event]", click_event)
        await _drop(page, "branch", 540, 320)
        await _connect(page, f"{_node('wait_for_1')} .output_1", f"{_node('branch_1')} .input_1")
        condition = '#node-form [data-path="branches.0"]'
        await _replace(page, condition, '{"trait": "plan", "value": "pro"}')
        await _checked_valid(page)
        dropped_at = await _position(page, "wait_for_1")

        await page.click("#save-journey")

        async def saved() -> bool:
            return (await page.path()).startswith("/journeys/jrn_")

        await wait_for(saved, within=30, what="the saved journey's page")
        await page.wait_for_element(_node("branch_1"))
        journey_id = (await page.path()).rsplit("/", 1)[-1]
        assert await _position(page, "wait_for_1") == dropped_at
        await page.click("#publish-journey")
        await page.wait_for_text("#journey-status", "active")

        stored = (await canvas.journey.get(f"/journeys/{journey_id}")).json()
        assert (stored["name"], stored["status"], stored["published_version"]) == (
            name,
            "active",
            1,
        )
        assert stored["draft"] == {
            "entry": {"event": entry_event},
            "start": "send_1",
            "nodes": {
                "send_1": {
                    "type": "send",
                    "channel": "email",
                    "template_id": "tpl_welcome",
                    "next": "wait_for_1",
                },
                "wait_for_1": {
                    "type": "wait_for",
                    "timeout": "P1D",
                    "event": click_event,
                    "next": "branch_1",
                },
                "branch_1": {
                    "type": "branch",
                    "branches": [{"condition": {"trait": "plan", "value": "pro"}}],
                },
            },
        }

        user = unique("u_canvas")
        await canvas.track(user, entry_event)
        await _counted(page, "send_1", "entered", 1, within=90)
        await _counted(page, "wait_for_1", "waiting", 1)
        await canvas.track(user, click_event)
        await _counted(page, "branch_1", "entered", 1)
        await _counted(page, "wait_for_1", "waiting", 0)
        await _counted_entry(page, "completed", 1)
        await page.screenshot(SCREENSHOTS / "console-journey-canvas.png")

        await page.click("#pause-journey")
        await page.wait_for_text("#journey-status", "paused")
        assert (await canvas.journey.get(f"/journeys/{journey_id}")).json()["status"] == "paused"

        await page.goto(f"{base}/journeys")
        row = f"tr[data-journey-id={json.dumps(journey_id)}]"
        assert await page.text(f"{row} [data-count=entered]") == "1"
        assert await page.text(f"{row} [data-count=completed]") == "1"
        await page.screenshot(SCREENSHOTS / "console-journeys.png")


async def _arrived(page: Page, path: str) -> None:
    async def there() -> bool:
        return await page.path() == path

    await wait_for(there, within=30, what=f"the browser to reach {path}")
    await page.wait_until_loaded()


async def _round_trips(page: Page) -> bool:
    """Every kind of node goes to the canvas and back unchanged."""
    definition = {
        "entry": {"segment": "seg_x", "current_members": True},
        "reentry": {"rule": "after", "cooldown": "P7D"},
        "goal": {"event": "Ordered", "within": "P7D"},
        "start": "a",
        "nodes": {
            "a": {"type": "send", "channel": "sms", "template_id": "t", "next": "b"},
            "b": {
                "type": "wait_for",
                "outcome": "clicked",
                "node": "a",
                "timeout": "P1D",
                "next": "c",
                "timeout_next": "x",
            },
            "c": {
                "type": "branch",
                "branches": [
                    {"condition": {"tag": "vip"}, "next": "d"},
                    {"condition": {"tag": "new"}},
                ],
                "default": "x",
            },
            "d": {
                "type": "split",
                "arms": [{"name": "p", "weight": 1, "next": "e"}, {"name": "q", "weight": 3}],
            },
            "e": {"type": "update_profile", "add_tags": ["seen"], "next": "f"},
            "f": {"type": "wait", "duration": "PT2H"},
            "x": {"type": "exit"},
        },
    }
    back = await page.evaluate(
        f"JourneyGraph.toDefinition(JourneyGraph.toDrawflow({json.dumps(definition)}, null))"
    )
    return bool(back["definition"] == definition)


async def _center(page: Page, selector: str) -> tuple[float, float]:
    box = await page.evaluate(
        f"(() => {{ const r = document.querySelector({json.dumps(selector)})"
        ".getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })()"
    )
    return float(box[0]), float(box[1])


async def _drag(page: Page, start: tuple[float, float], end: tuple[float, float]) -> None:
    """A real mouse drag through the DevTools protocol: press, move in steps, release."""
    mouse = "Input.dispatchMouseEvent"
    await page.send(mouse, type="mousePressed", x=start[0], y=start[1], button="left", clickCount=1)
    for step in range(1, 11):
        x = start[0] + (end[0] - start[0]) * step / 10
        y = start[1] + (end[1] - start[1]) * step / 10
        await page.send(mouse, type="mouseMoved", x=x, y=y, button="left", buttons=1)
    await page.send(mouse, type="mouseReleased", x=end[0], y=end[1], button="left", clickCount=1)


async def _drop(page: Page, kind: str, x: float, y: float) -> None:
    """Drag a kind from the palette and drop it at (x, y) of the canvas."""
    await page.evaluate(
        "document.querySelector('#journey-canvas').scrollIntoView({block: 'center'})"
    )
    start = await _center(page, f".palette-item[data-kind={kind}]")
    left, top = await page.evaluate(
        "(() => { const r = document.querySelector('#journey-canvas').getBoundingClientRect();"
        " return [r.x, r.y]; })()"
    )
    await _drag(page, start, (left + x, top + y))
    await page.wait_for_element(_node(f"{kind}_1"))


async def _connect(page: Page, output: str, input_: str) -> None:
    await _drag(page, await _center(page, output), await _center(page, input_))


async def _replace(page: Page, selector: str, value: str) -> None:
    """Select all of a field's text and type over it."""
    field = f"document.querySelector({json.dumps(selector)})"
    await page.evaluate(f"{field}.focus(); {field}.select()")
    await page.send("Input.insertText", text=value)
    assert await page.evaluate(f"{field}.value") == value


async def _shown_on(page: Page, node_id: str, field: str) -> None:
    shown = (
        f"(() => {{ const n = document.querySelector({json.dumps(_node(node_id))});"
        f" return !!n && n.classList.contains('invalid') && n.dataset.field === {json.dumps(field)}"
        " && n.querySelector('.node-error').textContent.startsWith("
        f"{json.dumps(field + ':')}); }})()"
    )

    async def on_the_node() -> bool:
        return bool(await page.evaluate(shown))

    await wait_for(on_the_node, within=30, what=f"{field} shown on {node_id}")


async def _checked_valid(page: Page) -> None:
    async def valid() -> bool:
        return bool(await page.evaluate("document.body.dataset.check === 'valid'"))

    try:
        await wait_for(valid, within=30, what="the journey service to find the graph valid")
    except AssertionError as timed_out:
        shown = await page.text("#journey-error")
        raise AssertionError(f"{timed_out}; the page shows {shown!r}") from None


async def _position(page: Page, node_id: str) -> list[str]:
    found = f"document.querySelector({json.dumps(_node(node_id))}).style"
    return list(await page.evaluate(f"[{found}.left, {found}.top]"))


async def _counted(
    page: Page, node_id: str, counter: str, expected: int, *, within: float = 30
) -> None:
    await _count_reads(page, f"{_node(node_id)} .node-stats", counter, expected, within)


async def _counted_entry(page: Page, counter: str, expected: int) -> None:
    await _count_reads(page, f"{_ENTRY} .node-stats", counter, expected, 30)


async def _count_reads(
    page: Page, selector: str, counter: str, expected: int, within: float
) -> None:
    read = f"document.querySelector({json.dumps(selector)}).dataset[{json.dumps(counter)}]"

    async def reads() -> bool:
        return bool(await page.evaluate(read) == str(expected))

    await wait_for(reads, within=within, what=f"{selector} to count {counter} {expected}")
