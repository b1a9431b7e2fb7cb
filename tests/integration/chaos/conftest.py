"""A stack of its own for fault injection: the services reach the broker and PostgreSQL through
TCP proxies (which can cut or silence them), and PostgreSQL may be stopped and started under
them. All seven services run as processes."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from libs.devstack import free_port
from libs.devstack._process import LOOPBACK
from libs.devstack.postgres import EmbeddedPostgres
from libs.devstack.pytest_plugin import TEST_ADMIN_TOKEN, ServiceLauncher
from libs.devstack.stack import Stack
from tests.integration.chaos.proxy import ProxyThread
from tests.integration.closed_loop.harness import ClosedLoop
from tests.integration.closed_loop.services import start_loop_services, warm_up
from tests.integration.dispatch.providers import running_providers
from tests.integration.support import wait_for

# Shorter than the defaults, for a fault's effects to show within the run: the deadline after
# which a poll stuck in a rebalance gives its client up, and a statement's on a silent database.
_SETTINGS = {
    "CLOSELOOP_KAFKA_POLL_DEADLINE_MS": "30000",
    "CLOSELOOP_DATABASE_COMMAND_TIMEOUT_MS": "3000",
}
# Dispatch's provider calls in flight at once: what a kill of dispatch may send twice (its send
# journal leaves at most these uncertain). The one place the bound is set, and what the run
# prints with it.
_IN_FLIGHT_SETTINGS = {"CLOSELOOP_DISPATCH_MAX_IN_FLIGHT": 64}
DISPATCH_IN_FLIGHT = _IN_FLIGHT_SETTINGS["CLOSELOOP_DISPATCH_MAX_IN_FLIGHT"]
DISPATCH_IN_FLIGHT_SETTING = " x ".join(f"{k}={v}" for k, v in _IN_FLIGHT_SETTINGS.items())
# And dispatch's retries. The provider timeout is the service's default: the fake providers live
# in the test's process, which a loaded machine starves for seconds at a time, and a call that
# times out after the provider took the message is sent again (a duplicate where the provider
# does not deduplicate; see docs/fault-injection.md).
_DISPATCH_SETTINGS = {
    **{name: str(value) for name, value in _IN_FLIGHT_SETTINGS.items()},
    "CLOSELOOP_DISPATCH_PROVIDER_TIMEOUT_SECONDS": "10",
    "CLOSELOOP_DISPATCH_RETRY_BASE_SECONDS": "0.2",
}
# The fake Twilio's account, and the address every email comes from.
SMS_ACCOUNT = {"account_sid": "ACchaos", "auth_token": "chaos-token", "from_number": "+15550000"}
EMAIL_FROM = "hello@closeloop.test"
LONG = os.environ.get("CLOSELOOP_CHAOS_LONG", "") not in ("", "0", "false")


@dataclass(frozen=True)
class Size:
    """How hard and how long: the default is what `make test` runs; CLOSELOOP_CHAOS_LONG=1 is
    the long run of `make chaos`.

    The rate is modest on purpose, in both: on a small machine (2 CPUs) the seven services carry
    the whole loop for about a dozen people a second, and a faster load only builds a backlog
    that the drain then has to absorb. Each person gets three messages, so the short run's 6
    people a second are 18 sends a second, which keeps it within CI's budget. The long run
    differs in time under load around each fault and in repeats. `CLOSELOOP_CHAOS_RATE`
    overrides the rate.
    """

    name: str
    rate: float  # new people per second
    purchase_every: int  # every n-th person buys
    before: float  # seconds of load before each fault
    after: float  # seconds of load after the system is back
    repeats: int  # times each fault is injected
    deadline: float  # seconds the test may take (an asyncio deadline inside pytest-timeout's)
    broker_cut: float = 10  # seconds the broker is unreachable
    database_silence: float = 10  # seconds the database takes connections and answers nothing
    storm: float = 6  # seconds every provider answers 5% server errors and 5% 429s


def _size() -> Size:
    if LONG:
        size = Size("long", 10, 2, before=15, after=15, repeats=3, deadline=3600)
    else:
        size = Size("short", 6, 2, before=2, after=2, repeats=1, deadline=420)
    rate = os.environ.get("CLOSELOOP_CHAOS_RATE")
    return replace(size, rate=float(rate)) if rate else size


SIZE = _size()


@dataclass
class Chaos:
    """The loop, the stack under it, the proxies in front of the broker and of PostgreSQL, and
    the run's names."""

    loop: ClosedLoop
    stack: Stack
    postgres: EmbeddedPostgres
    proxy: ProxyThread
    database_proxy: ProxyThread
    run: str

    def schema(self, service: str) -> str:
        return f"{service}_{self.run}"

    @property
    def dsn(self) -> str:
        return self.postgres.dsn

    async def unhealthy(self) -> list[str]:
        """Each service whose /healthz does not say healthy (a worker of it died), and why."""
        found = []
        async with httpx.AsyncClient(timeout=5) as client:
            for name, process in self.loop.processes.items():
                try:
                    answer = await client.get(f"{process.url}/healthz")
                except httpx.TransportError as error:
                    found.append(f"{name}: {error!r}")
                    continue
                if answer.status_code != 200:
                    found.append(f"{name}: {answer.text}")
        return found

    async def all_ready(self, *, within: float, what: str) -> None:
        async with httpx.AsyncClient(timeout=2) as client:

            async def ready() -> bool:
                for process in self.loop.processes.values():
                    try:
                        answer = await client.get(f"{process.url}/readyz")
                    except httpx.TransportError:
                        return False
                    if answer.status_code != 200:
                        return False
                return True

            await wait_for(ready, within=within, what=what, every=0.2)


@pytest_asyncio.fixture(scope="package", loop_scope="session")
async def chaos(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Chaos]:
    state_dir = Path(tempfile.mkdtemp(prefix="closeloop-chaos-"))
    os.chmod(state_dir, 0o755)
    log_dir = tmp_path_factory.mktemp("chaos-logs")
    broker_port = free_port()
    proxy = ProxyThread(LOOPBACK, free_port(), LOOPBACK, broker_port)
    await proxy.start()
    stack = Stack(
        state_dir,
        log_dir=log_dir,
        fast=True,
        environment="test",
        admin_token=TEST_ADMIN_TOKEN,
        broker_port=broker_port,
        broker_advertised_port=proxy.listen_port,
    )
    assert stack.postgres is not None, "the chaos suite restarts its own embedded PostgreSQL"
    database_proxy = ProxyThread(LOOPBACK, free_port(), LOOPBACK, stack.postgres.port)
    await database_proxy.start()
    services_env = {
        **_SETTINGS,
        "CLOSELOOP_DATABASE_URL": stack.database_url.replace(
            f":{stack.postgres.port}/", f":{database_proxy.listen_port}/"
        ),
    }
    launcher = ServiceLauncher(stack, log_dir)
    run = uuid.uuid4().hex[:8]
    admin = {"Authorization": f"Bearer {stack.admin_token}"}
    try:
        await stack.start()
        async with running_providers() as (providers, providers_url, smtp_port):
            try:
                processes = await start_loop_services(
                    launcher, run, _DISPATCH_SETTINGS, services_env
                )
                clients = {
                    name: httpx.AsyncClient(base_url=process.url, headers=admin, timeout=30)
                    for name, process in processes.items()
                }
                try:
                    created = await clients["ingest"].post("/sources", json={"name": f"web_{run}"})
                    assert created.status_code == 201, created.text
                    loop = ClosedLoop(
                        clients=clients,
                        processes=processes,
                        providers=providers,
                        providers_url=providers_url,
                        smtp_port=smtp_port,
                        write_key=created.json()["write_key"],
                        bootstrap=stack.kafka_bootstrap,
                    )
                    await loop.webhook_channel("webhook")
                    await loop.email_channel("email")
                    await loop.call(
                        "dispatch",
                        "POST",
                        "/channels",
                        json={
                            "name": "sms",
                            "kind": "sms",
                            "config": {"base_url": providers_url, **SMS_ACCOUNT},
                        },
                    )
                    print(f"\nchaos warm-up: first call round in {await warm_up(loop, run):.1f}s")
                    yield Chaos(loop, stack, stack.postgres, proxy, database_proxy, run)
                finally:
                    for client in clients.values():
                        await client.aclose()
            finally:
                await launcher.stop_all()
    finally:
        await stack.stop()
        await proxy.stop()
        await database_proxy.stop()
        shutil.rmtree(state_dir, ignore_errors=True)
