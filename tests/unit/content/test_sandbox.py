"""Rendering Liquid: variables, the limits, unreachable internals, strict and lenient misses."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import psutil
import pytest
import pytest_asyncio

from services.content.sandbox import (
    STARVED_WALL_FACTOR,
    ChildCpuClock,
    Limits,
    MissingVariable,
    Rendered,
    RenderError,
    RenderJob,
    RenderSandbox,
    RenderStarved,
    RenderTimeout,
    check_syntax,
    render_now,
)

LIMITS = Limits(loop_iterations=10_000, output_bytes=50_000, timeout_seconds=0.5)
# The deadline is CPU time; on a busy machine a bomb may take this much wall time to spend it.
WALL_LIMIT_SECONDS = LIMITS.timeout_seconds * STARVED_WALL_FACTOR + 2
PROFILE = {"id": "prf_1", "traits": {"first_name": "Li Wei", "plan": "premium"}, "tags": ["vip"]}


def render(source: str, *, strict: bool = False, html: bool = False, **variables: Any) -> Rendered:
    variables.setdefault("profile", PROFILE)
    job = RenderJob({"body": source}, variables, strict, frozenset({"body"} if html else ()))
    outcome = render_now(job, LIMITS)
    if isinstance(outcome, RenderError):
        raise outcome
    return outcome


def test_profile_event_and_request_variables_render() -> None:
    source = (
        "Hi {{ profile.traits.first_name }}, {{ event.properties.item_count }} items; "
        "code {{ coupon_code }}{% if profile.tags contains 'vip' %} (VIP){% endif %}"
    )
    rendered = render(source, event={"properties": {"item_count": 2}}, coupon_code="TEA-15")
    assert rendered.fields["body"] == "Hi Li Wei, 2 items; code TEA-15 (VIP)"
    assert rendered.missing == []


def test_html_fields_escape_variables_and_text_fields_do_not() -> None:
    profile = {"traits": {"first_name": "<script>x</script>"}}
    assert render("{{ profile.traits.first_name }}", html=True, profile=profile).fields["body"] == (
        "&lt;script&gt;x&lt;/script&gt;"
    )
    assert render("{{ profile.traits.first_name }}", profile=profile).fields["body"] == (
        "<script>x</script>"
    )


def test_a_loop_of_ten_million_iterations_is_refused() -> None:
    with pytest.raises(RenderError, match="loop iteration limit"):
        render("{% for i in (1..10000000) %}x{% endfor %}")


def test_nested_loops_count_their_product() -> None:
    with pytest.raises(RenderError, match="loop iteration limit"):
        render("{% for i in (1..1000) %}{% for j in (1..1000) %}{% endfor %}{% endfor %}")


def test_a_huge_output_is_refused() -> None:
    with pytest.raises(RenderError, match="output stream limit"):
        render("{% for i in (1..9000) %}0123456789{% endfor %}")


def test_a_template_growing_its_own_variables_is_refused() -> None:
    source = "{% assign s = 'abcdefgh' %}{% for i in (1..30) %}{% assign s = s | append: s %}"
    with pytest.raises(RenderError, match="namespace limit"):
        render(source + "{% endfor %}")


@pytest.mark.parametrize(
    "expression",
    [
        "profile.__class__",
        "profile.__class__.__mro__",
        "profile.traits.__globals__",
        "profile.items",
        "profile.__dict__",
        "coupon.__init__.__globals__",
        "profile['__class__']",
    ],
)
def test_python_internals_are_unreachable(expression: str) -> None:
    lenient = render(f"[{{{{ {expression} }}}}]", coupon="x")
    assert lenient.fields["body"] == "[]"
    with pytest.raises(MissingVariable):
        render(f"{{{{ {expression} }}}}", strict=True, coupon="x")


def test_strict_rendering_names_the_missing_variable() -> None:
    with pytest.raises(MissingVariable) as raised:
        render("Hi {{ profile.traits.nickname }}", strict=True)
    assert raised.value.variable == "profile.traits.nickname"
    assert raised.value.field == "body"


def test_strict_rendering_still_allows_tests_and_the_default_filter() -> None:
    source = (
        "{% if profile.traits.nickname %}x{% endif %}"
        "{{ profile.traits.nickname | default: 'friend' }}"
    )
    assert render(source, strict=True).fields["body"] == "friend"


def test_lenient_rendering_leaves_a_missing_variable_empty_and_records_it() -> None:
    rendered = render("Hi {{ profile.traits.nickname }}{{ coupon }}!")
    assert rendered.fields["body"] == "Hi !"
    assert rendered.missing == ["profile.traits.nickname", "coupon"]


def test_syntax_errors_are_found_before_saving() -> None:
    assert check_syntax("Hi {{ profile.traits.first_name }}") is None
    error = check_syntax("{% if x %}unclosed")
    assert error is not None and "endif" in error


@pytest_asyncio.fixture(loop_scope="session")
async def sandbox() -> AsyncIterator[RenderSandbox]:
    pool = RenderSandbox(LIMITS, workers=1)
    await pool.start()
    yield pool
    await pool.stop()


async def test_the_sandbox_renders_in_its_own_process(sandbox: RenderSandbox) -> None:
    job = RenderJob({"subject": "Hi {{ profile.traits.first_name }}"}, {"profile": PROFILE}, False)
    assert (await sandbox.render(job)).fields == {"subject": "Hi Li Wei"}


async def test_a_time_bomb_is_killed_at_the_deadline_and_the_sandbox_goes_on(
    sandbox: RenderSandbox,
) -> None:
    # One filter call over a huge range: no loop or output limit sees it, only the deadline.
    bomb = RenderJob({"body": "{{ (1..100000000) | join: ',' | size }}"}, {}, False)
    started = time.monotonic()
    with pytest.raises(RenderTimeout):
        await sandbox.render(bomb)
    assert time.monotonic() - started < WALL_LIMIT_SECONDS
    after = await sandbox.render(RenderJob({"body": "{{ 1 | plus: 1 }}"}, {}, False))
    assert after.fields == {"body": "2"}
    assert sandbox.is_alive()


async def test_strict_misses_cross_the_process_boundary(sandbox: RenderSandbox) -> None:
    with pytest.raises(MissingVariable) as raised:
        await sandbox.render(RenderJob({"subject": "{{ nope.deeper }}"}, {}, True))
    assert raised.value.variable == "nope"
    assert raised.value.field == "subject"


async def test_syntax_errors_are_found_in_the_sandbox_by_pointer(sandbox: RenderSandbox) -> None:
    errors = await sandbox.syntax_errors({"subject": "ok", "data/k": "{% if %}"})
    assert list(errors) == ["data/k"]


async def test_a_source_slow_to_parse_misses_the_deadline_without_blocking_the_loop(
    sandbox: RenderSandbox,
) -> None:
    # python-liquid takes seconds to parse this: in the service's process it would stop the
    # event loop (heartbeats, HTTP) for as long.
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.05)
            ticks += 1

    ticker = asyncio.create_task(tick())
    try:
        with pytest.raises(RenderTimeout):
            await sandbox.syntax_errors({"subject": "{{" * 5000})
    finally:
        ticker.cancel()
    assert ticks >= 5
    assert await sandbox.syntax_errors({"subject": "{{ x }}"}) == {}


async def test_a_killed_render_process_is_replaced_and_the_job_still_renders(
    sandbox: RenderSandbox,
) -> None:
    [worker] = sandbox._all
    worker._process.kill()
    await worker._process.wait()
    job = RenderJob({"body": "{{ 2 | plus: 2 }}"}, {}, False)
    assert (await sandbox.render(job)).fields == {"body": "4"}
    assert sandbox._all[0] is not worker and sandbox.is_alive()


async def test_a_render_waiting_for_a_core_is_not_taken_for_a_time_bomb(
    sandbox: RenderSandbox,
) -> None:
    # A stopped process gets no CPU, as on a saturated machine, while the wall clock runs on.
    [worker] = sandbox._all
    os.kill(worker._process.pid, signal.SIGSTOP)
    try:
        job = RenderJob({"body": "{{ 3 | plus: 3 }}"}, {}, False)
        rendering = asyncio.create_task(sandbox.render(job))
        await asyncio.sleep(LIMITS.timeout_seconds * 3)  # starved for three deadlines
        assert not rendering.done()
    finally:
        os.kill(worker._process.pid, signal.SIGCONT)
    assert (await rendering).fields == {"body": "6"}
    assert sandbox._all == [worker]


async def test_a_render_starved_past_the_wall_limit_is_given_up_as_the_machines_fault() -> None:
    limits = Limits(timeout_seconds=0.1)
    pool = RenderSandbox(limits, workers=1)
    await pool.start()
    try:
        [worker] = pool._all
        os.kill(worker._process.pid, signal.SIGSTOP)
        with pytest.raises(RenderStarved, match="overloaded"):
            await pool.render(RenderJob({"body": "{{ 1 }}"}, {}, False))
        assert (await pool.render(RenderJob({"body": "{{ 2 }}"}, {}, False))).fields == {
            "body": "2"
        }
    finally:
        await pool.stop()


async def test_a_cancelled_render_leaves_no_answer_for_the_next_job(
    sandbox: RenderSandbox,
) -> None:
    slow = RenderJob({"body": "{{ (1..3000000) | join: ',' | size }}"}, {}, False)
    task = asyncio.create_task(sandbox.render(slow))
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    job = RenderJob({"body": "{{ 'next' }}"}, {}, False)
    assert (await sandbox.render(job)).fields == {"body": "next"}


async def test_a_batch_renders_in_one_trip_and_a_bomb_in_it_fails_alone(
    sandbox: RenderSandbox,
) -> None:
    jobs = [RenderJob({"body": f"{{{{ {n} | plus: 1 }}}}"}, {}, False) for n in range(3)]
    bomb = RenderJob({"body": "{{ (1..100000000) | join: ',' | size }}"}, {}, False)
    strict = RenderJob({"subject": "{{ nope }}"}, {}, True)
    started = time.monotonic()
    outcomes = await sandbox.render_all([jobs[0], bomb, jobs[1], strict, jobs[2]])
    # The bomb has the deadline to itself and no more; the jobs after it render on a new process.
    assert time.monotonic() - started < WALL_LIMIT_SECONDS
    assert [o.fields if isinstance(o, Rendered) else type(o) for o in outcomes] == [
        {"body": "1"},
        RenderTimeout,
        {"body": "2"},
        MissingVariable,
        {"body": "3"},
    ]
    assert sandbox.is_alive()


_BURN_THEN_SLEEP = (
    "import time\n"
    "started = time.process_time()\n"
    "while time.process_time() - started < 0.3: pass\n"
    "print('burnt', flush=True)\n"
    "time.sleep(30)\n"
)


async def test_the_cpu_clock_reads_what_the_child_used_and_zero_once_it_is_reaped() -> None:
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _BURN_THEN_SLEEP, stdout=asyncio.subprocess.PIPE
    )
    assert child.stdout is not None
    clock = ChildCpuClock(child.pid)
    try:
        assert await asyncio.wait_for(child.stdout.readline(), 30) == b"burnt\n"
        by_psutil = sum(psutil.Process(child.pid).cpu_times()[:2])
        assert 0.3 <= clock.seconds() <= by_psutil + 0.02
        assert clock.seconds() >= by_psutil - 0.02
    finally:
        child.kill()
        await child.wait()
    assert clock.seconds() == 0.0
    clock.close()
