"""`python -m libs.devstack up|env|webhook`: the whole platform on this machine, for development,
and a webhook receiver to send its first messages to."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shlex
import signal
import sys
from collections.abc import Coroutine, Sequence
from pathlib import Path

from libs.devstack._process import port_is_free
from libs.devstack.services import REPO_ROOT, ServiceProcess, ServiceSpec, discover_services
from libs.devstack.stack import Stack
from libs.devstack.webhook import DEFAULT_PORT, serve

STATE_DIR = REPO_ROOT / ".devstack"
ENV_FILE = STATE_DIR / "stack.env"
# Fixed ports keep database tools and bookmarks working across restarts; a busy one is replaced.
_PREFERRED_BROKER_PORT = 19092
_PREFERRED_POSTGRES_PORT = 15432
_WATCH_INTERVAL_S = 1.0
# On this machine, dispatch's webhooks may reach loopback (`webhook` below, a local app);
# elsewhere they reach public addresses only (CLOSELOOP_DISPATCH_WEBHOOK_ALLOWED_NETWORKS).
_LOOPBACK_WEBHOOKS = ("CLOSELOOP_DISPATCH_WEBHOOK_ALLOWED_NETWORKS", '["127.0.0.0/8"]')


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m libs.devstack", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="run broker, database and every service until Ctrl-C")
    up.add_argument("--fresh", action="store_true", help="start with an empty database")
    commands.add_parser("env", help="print export lines for the stack `up` is running")
    webhook = commands.add_parser("webhook", help="receive and print dispatch's webhooks")
    webhook.add_argument("--port", type=int, default=DEFAULT_PORT)
    args = parser.parse_args(argv)
    if args.command == "env":
        return _print_env()
    if args.command == "webhook":
        return serve(args.port)
    return asyncio.run(_up(fresh=args.fresh))


def _print_env() -> int:
    if not ENV_FILE.exists():
        print("no stack is running: start one with `make up`", file=sys.stderr)
        return 1
    print(ENV_FILE.read_text(), end="")
    return 0


async def _up(fresh: bool) -> int:
    specs = discover_services()
    _refuse_busy_service_ports(specs)
    os.environ.setdefault(*_LOOPBACK_WEBHOOKS)
    generated_token = not os.environ.get("CLOSELOOP_ADMIN_TOKEN")
    stack = Stack(
        STATE_DIR,
        broker_port=_port_or_free(_PREFERRED_BROKER_PORT),
        postgres_port=_port_or_free(_PREFERRED_POSTGRES_PORT),
    )
    if fresh and stack.postgres is not None:
        stack.postgres.delete_data()
    stopping = _stop_event()
    print("starting the stack…", flush=True)
    try:
        processes = await _unless_stopped(_start(stack, specs), stopping)
        if processes is not None:
            _write_env_file(stack)
            _print_table(stack, processes, generated_token)
            await _watch(processes, stopping)
    except (RuntimeError, TimeoutError) as error:
        # Start-up failures name the process and show its log: that is the whole story.
        print(f"could not start the stack: {error}", file=sys.stderr, flush=True)
        return 1
    finally:
        print("stopping…", flush=True)
        ENV_FILE.unlink(missing_ok=True)
        await stack.stop()
        print("stopped: services, database and broker are down.", flush=True)
    return 0


async def _start(stack: Stack, specs: Sequence[ServiceSpec]) -> list[ServiceProcess]:
    await stack.start()
    return await stack.start_services(specs)


async def _unless_stopped(
    work: Coroutine[object, object, list[ServiceProcess]], stopping: asyncio.Event
) -> list[ServiceProcess] | None:
    """The result of `work`, or None if Ctrl-C came first (then `work` is cancelled)."""
    task = asyncio.create_task(work)
    stopped = asyncio.create_task(stopping.wait())
    await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return None


def _refuse_busy_service_ports(specs: Sequence[ServiceSpec]) -> None:
    busy = [f"{spec.name} ({spec.port})" for spec in specs if not port_is_free(spec.port)]
    if busy:
        raise SystemExit(
            f"ports in use: {', '.join(busy)}. Is another `make up` running? Stop it first."
        )


def _port_or_free(preferred: int) -> int | None:
    return preferred if port_is_free(preferred) else None


def _stop_event() -> asyncio.Event:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    return stopping


async def _watch(processes: Sequence[ServiceProcess], stopping: asyncio.Event) -> None:
    """Wait for Ctrl-C or SIGTERM, telling the user once about each service that dies."""
    reported: set[str] = set()
    while not stopping.is_set():
        for process in processes:
            if process.returncode is not None and process.name not in reported:
                reported.add(process.name)
                print(
                    f"{process.name} exited with code {process.returncode}: see {process.log_path}",
                    flush=True,
                )
        try:
            await asyncio.wait_for(stopping.wait(), _WATCH_INTERVAL_S)
        except TimeoutError:
            continue


def _write_env_file(stack: Stack) -> None:
    lines = [f"export {name}={shlex.quote(value)}" for name, value in stack.env().items()]
    ENV_FILE.write_text("\n".join(lines) + "\n")


def _print_table(stack: Stack, processes: Sequence[ServiceProcess], generated_token: bool) -> None:
    rows = [
        ("broker", stack.kafka_bootstrap, _origin(stack.broker is not None)),
        ("postgres", stack.database_url, _origin(stack.postgres is not None)),
    ]
    rows += [(p.name, p.url, f"{p.url}/docs") for p in processes]
    width = max(len(name) for name, _, _ in rows)
    print()
    for name, where, note in rows:
        print(f"  {name:<{width}}  {where}  {note}")
    print()
    if not processes:
        print("no services are installed yet (services/<name>/__main__.py): broker, database")
        print("and topics are up on their own.")
    if generated_token:
        print(f"development admin token: {stack.admin_token}")
    print(f"logs: {_relative(stack.log_dir)}   env: `python -m libs.devstack env`")
    print("Ctrl-C stops everything.", flush=True)


def _origin(embedded: bool) -> str:
    return "(embedded)" if embedded else "(from the environment)"


def _relative(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


if __name__ == "__main__":
    sys.exit(main())
