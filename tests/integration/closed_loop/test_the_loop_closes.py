"""The loop closed: a Segment call to a sent email, a click, a branch, a webhook, a credited
purchase, and the profile that shows it all."""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

import orjson
import pytest

from tests.integration.closed_loop.harness import ClosedLoop, elapsed_ms, now, unique
from tests.integration.support import wait_for

pytestmark = pytest.mark.integration

PRODUCT_URL = "https://shop.example.com/p/tea-oolong-250g?utm_campaign=winback"


async def _define_the_campaign(loop: ClosedLoop, run: str) -> str:
    """A segment of this run's people, an email and a webhook template, a journey: email,
    wait for its click, then (clicked) tag the person and call the webhook; and a conversion."""
    segment_id, journey_id = f"seg_{run}", f"jrn_{run}"
    email, hook = f"tpl_email_{run}", f"tpl_hook_{run}"
    await loop.call(
        "segment",
        "POST",
        "/segments",
        json={"id": segment_id, "name": "loop", "conditions": {"trait": "loop_run", "value": run}},
    )
    await loop.call(
        "content",
        "POST",
        "/templates",
        json={
            "id": email,
            "name": "winback",
            "channel": "email",
            "defaults": {"profile.traits.first_name": "there"},
            "variants": [
                {
                    "id": "only",
                    "subject": "{{ profile.traits.first_name }}, your oolong is waiting",
                    "html": f'<p>Hi {{{{ profile.traits.first_name }}}}</p><a href="{PRODUCT_URL}">'
                    "Shop</a>",
                }
            ],
        },
    )
    await loop.call(
        "content",
        "POST",
        "/templates",
        json={
            "id": hook,
            "name": "clicked",
            "channel": "webhook",
            "variants": [{"id": "only", "payload": {"clicked_by": "{{ profile.id }}"}}],
        },
    )
    await loop.call(
        "journey",
        "POST",
        "/journeys",
        json={
            "id": journey_id,
            "name": "winback",
            "entry": {"segment": segment_id},
            "start": "send_email",
            "nodes": {
                "send_email": {
                    "type": "send",
                    "channel": "email",
                    "template_id": email,
                    "next": "wait_click",
                },
                "wait_click": {
                    "type": "wait_for",
                    "outcome": "clicked",
                    "node": "send_email",
                    "timeout": "PT10M",
                    "next": "tag_clicked",
                    "timeout_next": "done",
                },
                "tag_clicked": {
                    "type": "update_profile",
                    "add_tags": ["winback_clicked"],
                    "next": "call_hook",
                },
                "call_hook": {"type": "send", "channel": "webhook", "template_id": hook},
                "done": {"type": "exit"},
            },
        },
    )
    await loop.call("journey", "POST", f"/journeys/{journey_id}/publish")
    await loop.call(
        "attribution",
        "POST",
        "/conversions",
        json={
            "id": f"cnv_{run}",
            "name": "order_completed",
            "event": "order_completed",
            "value_property": "revenue",
            "currency_property": "currency",
            "window": "P7D",
            "attribution_model": "last_touch",
            "touch_types": ["message.clicked"],
        },
    )
    return journey_id


def _tracked_link(html: str) -> str:
    links: list[str] = re.findall(r'href="([^"]+/c/[^"]+)"', html)
    assert len(links) == 1, html
    return links[0]


async def test_a_segment_call_is_emailed_clicked_branched_credited_and_remembered(
    loop: ClosedLoop,
) -> None:
    run = unique("loop")
    journey_id = await _define_the_campaign(loop, run)
    user_id, address = unique("user"), f"{unique('li.wei')}@example.com"

    # A Segment-format identify puts the person in the segment: the journey emails them.
    started = time.monotonic()
    await loop.track(
        "identify",
        userId=user_id,
        traits={"email": address, "first_name": "Li Wei", "loop_run": run},
        timestamp=now(),
    )
    mail = await loop.mail_to(address)
    loop_latency = elapsed_ms(started)
    assert mail["Subject"] == "Li Wei, your oolong is waiting"
    html = next(
        str(part.get_payload(decode=True), "utf-8")  # type: ignore[arg-type]
        for part in mail.walk()
        if part.get_content_type() == "text/html"
    )
    assert "Hi Li Wei" in html

    # The click link redirects to the product, and the click moves the journey on.
    click = await loop.dispatch.get(_tracked_link(html), follow_redirects=False)
    assert click.status_code == 302, click.text
    assert click.headers["location"] == PRODUCT_URL
    profile = await loop.profile_of(f"user_id:{user_id}")
    assert profile is not None
    profile_id = profile["id"]
    inbox = loop.providers.webhook("webhook")

    async def webhook_called() -> bool:
        return any(
            message["body"].get("payload", {}).get("clicked_by") == profile_id
            for message in _bodies(inbox.by_key.values())
        )

    await wait_for(webhook_called, within=60, what="the clicked branch's webhook")
    stats = await loop.call("journey", "GET", f"/journeys/{journey_id}/stats")
    assert stats["nodes"]["wait_click"]["matched"] == 1
    assert stats["nodes"]["call_hook"]["entered"] == 1
    assert stats["nodes"].get("done", {}).get("entered", 0) == 0

    # A later purchase is credited to the clicked email; the profile shows it all.
    await loop.track(
        "track",
        userId=user_id,
        event="order_completed",
        properties={"revenue": 129.9, "currency": "CNY", "order_id": unique("SO")},
        timestamp=now(),
    )
    remembered: dict[str, Any] = {}

    async def credited_on_the_profile() -> bool:
        remembered.update(await loop.call("profile", "GET", f"/profiles/{profile_id}"))
        return bool(remembered["engagement"]["attributed_revenue"])

    await wait_for(credited_on_the_profile, within=60, what="the credited revenue on the profile")
    engagement = remembered["engagement"]
    assert engagement["attributed_revenue"] == {"CNY": pytest.approx(129.9)}
    assert engagement["by_channel"]["email"]["clicked"] == 1
    assert engagement["by_channel"]["email"]["sent"] == 1
    assert engagement["last_engaged_at"] is not None
    assert "winback_clicked" in remembered["tags"]
    report = await loop.call(
        "attribution", "GET", "/reports/node", params={"journey_id": journey_id}
    )
    by_node = {row["node_id"]: row for row in report["rows"]}
    assert by_node["send_email"]["clicked"] == 1
    assert Decimal(by_node["send_email"]["revenue"]["CNY"]) == Decimal("129.9")
    print(f"\nloop latency, identify to email at the SMTP server: {loop_latency:.0f} ms")


def _bodies(messages: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"body": orjson.loads(message["body"])} for message in messages]
