"""The console in Debian's headless Chromium: sign in, build a segment condition by condition and
watch its member count follow, save it; an analyst sees the builder without a way to change it.
Screenshots go to tests/output/screenshots/ (kept by CI, ignored by git)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Final

import pytest

from tests.events import profile_updated
from tests.integration.console.chromium import Page, chromium_page
from tests.integration.console.conftest import Console
from tests.integration.console.harness import ConsoleBrowser
from tests.integration.support import wait_for

pytestmark = pytest.mark.integration

SCREENSHOTS: Final = Path(__file__).resolve().parents[2] / "output" / "screenshots"
_LAST_CONDITION: Final = "#rule-editor .children > .condition:last-child"


async def test_a_marketer_signs_in_builds_a_segment_and_sees_its_count_change(
    console: Console, marketer: ConsoleBrowser
) -> None:
    plan = f"plan_{uuid.uuid4().hex[:8]}"
    profiles = sorted(f"prf_browser_{uuid.uuid4().hex[:8]}" for _ in range(3))
    countries = ["FR", "FR", "DE"]
    await console.segment.publish(
        *(
            profile_updated(profile, traits={"plan": plan, "country": country})
            for profile, country in zip(profiles, countries, strict=True)
        )
    )

    async def stored() -> bool:
        rule = {"trait": "plan", "value": plan}
        answer = await marketer.post_json("/segments/preview", {"conditions": rule})
        return bool(answer.json().get("count") == 3)

    await wait_for(stored, within=90, what="the segment service to store the three profiles")
    # Chromium keeps Secure cookies for http://localhost (a secure context), not for 127.0.0.1.
    base = console.process.url.replace("127.0.0.1", "localhost")
    name = f"Plan {plan} outside Germany"

    async with chromium_page() as page:
        await page.goto(f"{base}/segments/new")
        assert await page.path() == "/sign-in"
        await page.type("input[name=email]", console.marketer.email)
        await page.type("input[name=password]", console.marketer.password)
        await page.screenshot(SCREENSHOTS / "console-sign-in.png")
        await page.click("form[action='/sign-in'] button[type=submit]")
        await _arrived(page, "/segments/new")

        await page.type("#segment-name", name)
        await page.click("#rule-editor .add-condition")
        await page.type(f"{_LAST_CONDITION} [data-part=trait-name]", "plan")
        await page.type(f"{_LAST_CONDITION} [data-part=value]", plan)
        await page.wait_for_text("#preview-count", "3")

        await page.click("#rule-editor .add-condition")
        await page.type(f"{_LAST_CONDITION} [data-part=trait-name]", "country")
        await page.type(f"{_LAST_CONDITION} [data-part=value]", "DE")
        await page.wait_for_text("#preview-count", "1")
        await page.click(f"{_LAST_CONDITION} [data-part=not]")
        await page.wait_for_text("#preview-count", "2")
        assert await page.text("#preview-sample") == "".join(profiles[:2])
        await page.screenshot(SCREENSHOTS / "console-segment-builder.png")

        await page.click("#save-segment")

        async def saved() -> bool:
            path = await page.path()
            return path.startswith("/segments/seg_")

        await wait_for(saved, within=30, what="the saved segment's page")
        segment_id = (await page.path()).rsplit("/", 1)[-1]
        await page.wait_for_text("#preview-count", "2")
        await page.screenshot(SCREENSHOTS / "console-segment-saved.png")

    stored_segment = (await console.segment.http.get(f"/segments/{segment_id}")).json()
    assert stored_segment["name"] == name
    assert stored_segment["conditions"] == {
        "all": [
            {"trait": "plan", "op": "eq", "value": plan},
            {"not": {"trait": "country", "op": "eq", "value": "DE"}},
        ]
    }
    assert sorted(await console.segment.members(segment_id)) == profiles[:2]


async def test_an_analyst_in_the_browser_sees_a_segment_but_no_way_to_change_it(
    console: Console, marketer: ConsoleBrowser
) -> None:
    created = await marketer.post_form(
        "/segments",
        {"name": "Looked at", "description": "", "conditions": '{"tag": "vip"}'},
    )
    segment_path = created.headers["location"]
    base = console.process.url.replace("127.0.0.1", "localhost")
    async with chromium_page() as page:
        await page.goto(f"{base}/sign-in")
        await page.type("input[name=email]", console.analyst.email)
        await page.type("input[name=password]", console.analyst.password)
        await page.click("form[action='/sign-in'] button[type=submit]")
        await _arrived(page, "/segments")
        await page.goto(f"{base}{segment_path}")
        assert await page.evaluate("document.querySelector('#save-segment') === null")
        assert await page.evaluate("document.querySelector('#rule-editor .add-condition') === null")
        assert await page.evaluate("document.querySelector('#segment-name').matches(':disabled')")
        status = await page.evaluate(
            "fetch(location.pathname, {method: 'POST', headers: {'X-CSRF-Token':"
            " document.querySelector('meta[name=csrf-token]').content}}).then(r => r.status)"
        )
        assert status == 403
        await page.screenshot(SCREENSHOTS / "console-analyst-read-only.png")


async def _arrived(page: Page, path: str) -> None:
    async def there() -> bool:
        return await page.path() == path

    await wait_for(there, within=30, what=f"the browser to reach {path}")
    await page.wait_until_loaded()
