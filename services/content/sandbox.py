"""The render sandbox: Liquid rendered in separate processes, with limits and a hard deadline.

python-liquid bounds loops, output size, a template's own variables and context depth, but not
time: one filter over a huge range (`(1..100000000) | join`) runs for seconds inside a single
call that nothing can interrupt, and parsing some sources (`{{` repeated a few thousand times)
takes seconds too. So templates are parsed and rendered in worker processes, never in the
service's event loop; a job that misses its deadline has its process killed, and a dead process
is replaced before its next job. A batch's renders travel to a process as one line and come
back one answer line each, every render within its own deadline. Templates only ever see JSON
data (dicts, lists, strings, numbers), and Liquid resolves names by item lookup, never attribute
access, so `{{ profile.__class__ }}` finds nothing.

The deadline counts the process's CPU time, not the clock: on a saturated machine (a service
catching up after a restart) a trivial template can wait longer than the deadline for a core,
and that says nothing about the template. A process that gets so little CPU that
`STARVED_WALL_FACTOR` deadlines of wall time pass first is given up as `RenderStarved`: the
machine's fault, not the template's, so the caller retries it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import math
import os
import resource
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import psutil
from liquid import BoundTemplate, Environment, FalsyStrictUndefined, Undefined
from liquid.exceptions import LiquidError, UndefinedError

_UNDEFINED_SUFFIX = " is undefined"
_MAX_ANSWER_BYTES = 16 * 1024 * 1024
_READY = b"ready\n"
_START_SECONDS = 60.0
# How much wall time a render may take, in deadlines, while its process waits for a core.
STARVED_WALL_FACTOR = 10.0


@dataclass(frozen=True)
class Limits:
    """What one render may use."""

    loop_iterations: int = 10_000
    output_bytes: int = 200_000
    namespace_bytes: int = 500_000
    context_depth: int = 30
    timeout_seconds: float = 1.0
    memory_bytes: int = 1024 * 1024 * 1024


@dataclass(frozen=True)
class RenderJob:
    """Liquid sources by field name, the variables, and how to treat a missing variable."""

    sources: Mapping[str, str]
    variables: Mapping[str, Any]
    strict: bool
    html_fields: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Rendered:
    """The rendered fields, and the variables that rendered empty because they were missing."""

    fields: dict[str, str]
    missing: list[str] = field(default_factory=list)


class RenderError(Exception):
    """A template did not render: a syntax error, a limit, a missing variable, the deadline."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class MissingVariable(RenderError):
    """A strict render met a variable nobody defined."""

    def __init__(self, variable: str, *, field: str) -> None:
        super().__init__(f"{variable} is not defined (used in {field})", field=field)
        self.variable = variable


class RenderTimeout(RenderError):
    """The render used more CPU time than its deadline; its process was killed."""


class RenderStarved(RenderError):
    """The render's process did not get enough CPU to finish within `STARVED_WALL_FACTOR`
    deadlines of wall time; it was killed. The machine is overloaded: worth retrying."""


def check_syntax(source: str) -> str | None:
    """The syntax error in a Liquid source, or None when it parses (here, in this process: the
    service asks a worker, `RenderSandbox.syntax_errors`, since some sources parse for seconds)."""
    try:
        _environment(Limits(), html=False, strict=True).from_string(source)
    except LiquidError as error:
        return _first_line(error)
    return None


class RenderSandbox:
    """A pool of render processes; each job waits for a free one and is answered within the
    deadline, without blocking the event loop."""

    name = "render-sandbox"

    def __init__(self, limits: Limits, workers: int) -> None:
        self._limits = limits
        self._size = workers
        self._idle: asyncio.Queue[_Worker] = asyncio.Queue()
        self._all: list[_Worker] = []

    async def start(self) -> None:
        for _ in range(self._size):
            worker = await _Worker.spawn(self._limits)
            self._all.append(worker)
            self._idle.put_nowait(worker)

    async def stop(self) -> None:
        for worker in self._all:
            await worker.reap()
        self._all.clear()
        self._idle = asyncio.Queue()

    def is_alive(self) -> bool:
        return len(self._all) == self._size

    async def render(self, job: RenderJob) -> Rendered:
        [outcome] = await self.render_all([job])
        if isinstance(outcome, RenderError):
            raise outcome
        return outcome

    async def render_all(self, jobs: Sequence[RenderJob]) -> list[Rendered | RenderError]:
        """Each job's rendering or its error, in order.

        The jobs are shared out among the processes, each share sent in one line; every job
        still has the whole deadline to itself, and one that misses it fails alone.
        """
        if not jobs:
            return []
        size = math.ceil(len(jobs) / min(self._size, len(jobs)))
        shares = [jobs[start : start + size] for start in range(0, len(jobs), size)]
        if len(shares) == 1:
            return await self._render_share(shares[0])
        answered = await asyncio.gather(*(self._render_share(share) for share in shares))
        return [outcome for share in answered for outcome in share]

    async def _render_share(self, jobs: Sequence[RenderJob]) -> list[Rendered | RenderError]:
        outcomes: list[Rendered | RenderError] = []
        died_at: int | None = None
        worker = await self._idle.get()
        try:
            while len(outcomes) < len(jobs):
                worker = await self._usable(worker)
                pending = jobs[len(outcomes) :]
                line: bytes | None = _render_line(pending)
                try:
                    for _ in pending:
                        answer = await worker.exchange(line, self._limits.timeout_seconds)
                        outcomes.append(_outcome(answer))
                        line = None
                except RenderError as error:  # this job's: the deadline, an answer too large
                    outcomes.append(error)
                except _WorkerDied as died:
                    # Killed from outside (the OOM killer, an operator), most likely between
                    # jobs: once more on a fresh process, so a good template is not blamed.
                    if died_at == len(outcomes):
                        outcomes.append(RenderError(f"the render process died twice: {died}"))
                    died_at = len(outcomes)
        finally:
            self._idle.put_nowait(worker)
        return outcomes

    async def syntax_errors(self, sources: Mapping[str, str]) -> dict[str, str]:
        """The syntax error of each source that does not parse, by the sources' keys.

        Raises RenderTimeout when parsing them takes longer than a render may.
        """
        answer = await self._exchange(_parse_line(sources))
        errors: dict[str, str] = answer["errors"]
        return errors

    async def _exchange(self, line: bytes) -> dict[str, Any]:
        worker = await self._idle.get()
        try:
            worker = await self._usable(worker)
            try:
                return await worker.exchange(line, self._limits.timeout_seconds)
            except _WorkerDied:
                # Killed from outside (the OOM killer, an operator), most likely between jobs:
                # once more on a fresh process, so a good template is not blamed for it.
                worker = await self._usable(worker)
                try:
                    return await worker.exchange(line, self._limits.timeout_seconds)
                except _WorkerDied as died:
                    raise RenderError(f"the render process died twice: {died}") from None
        finally:
            self._idle.put_nowait(worker)

    async def _usable(self, worker: _Worker) -> _Worker:
        """The worker, or a new process in its place if it has died or was killed."""
        if worker.running:
            return worker
        await worker.reap()
        replacement = await _Worker.spawn(self._limits)
        self._all[self._all.index(worker)] = replacement
        return replacement


class _CpuSpent(Exception):
    """The process used up a render's CPU time without answering."""


class _WorkerDied(Exception):
    """The process exited or closed its pipes before answering."""


class _Worker:
    """One render process (`python -m services.content.sandbox`), JSON lines over its pipes."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self._process = process
        self._usage = ChildCpuClock(process.pid)
        self._killed = False

    @classmethod
    async def spawn(cls, limits: Limits) -> _Worker:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "services.content.sandbox",
            orjson.dumps(dataclasses.asdict(limits)).decode(),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=_MAX_ANSWER_BYTES,
        )
        # Its start-up (imports, a first render) must not count against a message's deadline.
        assert process.stdout is not None
        try:
            async with asyncio.timeout(_START_SECONDS):
                ready = await process.stdout.readline()
        except TimeoutError:
            ready = b""
        except BaseException:
            process.kill()  # cancelled while it started: it must not outlive us unowned
            raise
        if ready != _READY:
            process.kill()
            await process.wait()
            raise RuntimeError("the render process did not start")
        return cls(process)

    @property
    def running(self) -> bool:
        # A killed process is not reaped at once: until then its returncode is still None.
        return not self._killed and self._process.returncode is None

    async def exchange(self, line: bytes | None, seconds: float) -> dict[str, Any]:
        """Send a line (None: the answer to a job sent before) and read one answer within
        `seconds`. Whatever interrupts that (the deadline, a cancelled caller) kills the
        process: a late answer must never reach the next job."""
        stdin, stdout = self._process.stdin, self._process.stdout
        assert stdin is not None and stdout is not None
        cpu_at_start = self._cpu_seconds()
        started = time.monotonic()
        try:
            async with asyncio.timeout(seconds * STARVED_WALL_FACTOR):
                if line is not None:
                    stdin.write(line)
                    await stdin.drain()
                answer = await self._answer_within_cpu(stdout, cpu_at_start + seconds)
        except _CpuSpent:
            self._kill()
            raise RenderTimeout(f"the template took longer than {seconds:g}s") from None
        except TimeoutError:
            used = self._cpu_seconds() - cpu_at_start
            self._kill()
            raise RenderStarved(
                f"the render process got {used:.2f}s of CPU in {time.monotonic() - started:.1f}s"
                ": the machine is overloaded"
            ) from None
        except ValueError:
            self._kill()
            raise RenderError("the rendering is larger than the sandbox answers") from None
        except OSError as error:
            self._kill()
            raise _WorkerDied(repr(error)) from None
        except BaseException:
            self._kill()
            raise
        if not answer:
            self._kill()
            raise _WorkerDied("it exited without answering (out of memory?)")
        result: dict[str, Any] = orjson.loads(answer)
        return result

    async def _answer_within_cpu(self, stdout: asyncio.StreamReader, cpu_limit: float) -> bytes:
        """The next answer line, unless the process's CPU time passes `cpu_limit` first.

        A single-threaded process cannot use more CPU time than the wall time that passes, so
        waiting the CPU time it has left, then looking again, never lets it overrun by more
        than one look, and a starved process is simply waited for.
        """
        reading = asyncio.ensure_future(stdout.readline())
        try:
            while True:
                left = cpu_limit - self._cpu_seconds()
                if left <= 0:
                    raise _CpuSpent
                done, _ = await asyncio.wait({reading}, timeout=max(left, 0.01))
                if done:
                    return reading.result()
        finally:
            reading.cancel()

    def _cpu_seconds(self) -> float:
        """The CPU time the process has used (0 once it has exited: its answer says the rest)."""
        return self._usage.seconds()

    async def reap(self) -> None:
        self._kill()
        await self._process.wait()
        self._usage.close()

    def _kill(self) -> None:
        self._killed = True
        if self._process.returncode is None:
            self._process.kill()


class ChildCpuClock:
    """The CPU time (user + system) a child process has used, read twice per render.

    On Linux it reads `/proc/<pid>/stat` through a descriptor kept open, a few microseconds
    a read; psutil, elsewhere, opens the file each time and builds an object, five times that.
    """

    _TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

    def __init__(self, pid: int) -> None:
        self._process = psutil.Process(pid)
        try:
            self._stat: int | None = os.open(f"/proc/{pid}/stat", os.O_RDONLY)
        except OSError:
            self._stat = None

    def seconds(self) -> float:
        """0 once the process has exited and been reaped."""
        if self._stat is None:
            return self._from_psutil()
        try:
            line = os.pread(self._stat, 1024, 0)
        except OSError:  # reaped: ESRCH
            return 0.0
        # After the command name, which may hold spaces and parentheses: state is field 3,
        # utime and stime fields 14 and 15.
        fields = line[line.rindex(b")") + 2 :].split(b" ", 14)
        return (int(fields[11]) + int(fields[12])) / self._TICKS_PER_SECOND

    def _from_psutil(self) -> float:
        try:
            times = self._process.cpu_times()
        except psutil.Error:
            return 0.0
        return float(times.user + times.system)

    def close(self) -> None:
        if self._stat is not None:
            os.close(self._stat)
            self._stat = None


def _render_line(jobs: Sequence[RenderJob]) -> bytes:
    return orjson.dumps(
        {
            "render": [
                {
                    "sources": dict(job.sources),
                    "variables": dict(job.variables),
                    "strict": job.strict,
                    "html_fields": sorted(job.html_fields),
                }
                for job in jobs
            ]
        },
        option=orjson.OPT_APPEND_NEWLINE,
    )


def _parse_line(sources: Mapping[str, str]) -> bytes:
    return orjson.dumps({"parse": dict(sources)}, option=orjson.OPT_APPEND_NEWLINE)


def _outcome(answer: dict[str, Any]) -> Rendered | RenderError:
    error = answer.get("error")
    if error is None:
        return Rendered(answer["fields"], answer["missing"])
    if error.get("variable") is not None:
        return MissingVariable(error["variable"], field=error["field"])
    return RenderError(error["message"], field=error.get("field"))


def _serve(limits: Limits) -> None:
    """The render process: one job per line on stdin, one answer per line on stdout."""
    resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
    render_now(
        RenderJob({"warm": "{{ x | default: 'up' }}{% for i in (1..2) %}{% endfor %}"}, {}, False),
        limits,
    )
    sys.stdout.buffer.write(_READY)
    sys.stdout.buffer.flush()
    for line in sys.stdin.buffer:
        request = orjson.loads(line)
        if "parse" in request:
            _write({"errors": _syntax_errors(request["parse"])})
            continue
        for job in request["render"]:
            # Each answer as soon as it is ready: the service times every job on its own.
            outcome = render_now(
                RenderJob(
                    job["sources"], job["variables"], job["strict"], frozenset(job["html_fields"])
                ),
                limits,
            )
            _write(_answer(outcome))


def _write(answer: dict[str, Any]) -> None:
    sys.stdout.buffer.write(orjson.dumps(answer, option=orjson.OPT_APPEND_NEWLINE))
    sys.stdout.buffer.flush()


def _syntax_errors(sources: Mapping[str, str]) -> dict[str, str]:
    errors = {key: check_syntax(source) for key, source in sources.items()}
    return {key: error for key, error in errors.items() if error is not None}


def _answer(outcome: Rendered | RenderError) -> dict[str, Any]:
    if isinstance(outcome, Rendered):
        return {"fields": outcome.fields, "missing": outcome.missing}
    variable = outcome.variable if isinstance(outcome, MissingVariable) else None
    return {"error": {"message": str(outcome), "field": outcome.field, "variable": variable}}


def render_now(job: RenderJob, limits: Limits) -> Rendered | RenderError:
    """Render every field of `job` here, in this process (the sandbox calls it in a worker)."""
    rendered: dict[str, str] = {}
    missing: list[str] = []
    for name, source in job.sources.items():
        _Recorded.names = []
        try:
            template = _parsed(limits, name in job.html_fields, job.strict, source)
            rendered[name] = template.render(**job.variables)
        except UndefinedError as error:
            return MissingVariable(_variable_of(error), field=name)
        except LiquidError as error:
            return RenderError(f"{name}: {_first_line(error)}", field=name)
        except (MemoryError, RecursionError) as error:
            return RenderError(f"{name}: {type(error).__name__}", field=name)
        missing.extend(n for n in _Recorded.names if n not in missing)
    return Rendered(rendered, missing)


class _Recorded(Undefined):
    """Lenient (send time): a missing variable renders empty, and its name is noted."""

    names: list[str] = []

    def __str__(self) -> str:
        _Recorded.names.append(_variable_of_hint(self.hint, self.name))
        return ""


class _Strict(FalsyStrictUndefined):
    """Strict (preview): output of a missing variable fails; `if` and `default` still work."""

    force_liquid_default = True


@functools.lru_cache(maxsize=512)
def _parsed(limits: Limits, html: bool, strict: bool, source: str) -> BoundTemplate:
    # A template's sources come back with every message it renders: parse each once.
    return _environment(limits, html=html, strict=strict).from_string(source)


@functools.lru_cache(maxsize=8)
def _environment(limits: Limits, *, html: bool, strict: bool) -> Environment:
    class LimitedEnvironment(Environment):
        loop_iteration_limit = limits.loop_iterations
        output_stream_limit = limits.output_bytes
        local_namespace_limit = limits.namespace_bytes
        context_depth_limit = limits.context_depth

    return LimitedEnvironment(undefined=_Strict if strict else _Recorded, autoescape=html)


def _variable_of(error: UndefinedError) -> str:
    return _variable_of_hint(getattr(error, "message", None) or str(error), None)


def _variable_of_hint(hint: str | None, name: str | None) -> str:
    text = (hint or "").splitlines()[0] if hint else ""
    if text.endswith(_UNDEFINED_SUFFIX):
        return text.removesuffix(_UNDEFINED_SUFFIX).strip("'")
    return name or "?"


def _first_line(error: LiquidError) -> str:
    message = getattr(error, "message", None) or str(error)
    return str(message).splitlines()[0]


if __name__ == "__main__":
    _serve(Limits(**orjson.loads(sys.argv[1])))
