"""Shared bench plumbing: child processes that always die with the bench, and a load client.

The load client runs in its own process (`python -m bench._common load ...`) so the
client's event loop never competes with the server it measures inside one interpreter.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    # Linux: the kernel sends SIGTERM to the child if the bench itself is killed (even -9),
    # so no server outlives a bench that never reached its `finally`.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def child_env(**overrides: str) -> dict[str, str]:
    """The current environment plus `overrides`, with the repo root importable."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(overrides)
    return env


def free_port() -> int:
    """A port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def installed(module: str) -> bool:
    """Whether `module` can be imported here (an optional competitor, such as LiteLLM)."""
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def split_cpus() -> tuple[set[int], set[int]] | None:
    """(the server's CPU, everyone else's): the last CPU this process may use for the server
    under test, the rest for the load client and the fake upstream; None on one CPU."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None
    return {cpus[-1]}, set(cpus[:-1])


def pin(pid: int, cpus: set[int]) -> None:
    """Keep every thread of process `pid` on `cpus` (Linux: each thread has its own mask)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(int(task.name), cpus)


class Children:
    """Child processes of one bench run; `stop_all()` (also on Ctrl-C) ends every one."""

    def __init__(self, log_dir: Path) -> None:
        self._log_dir = log_dir
        self._procs: list[tuple[str, subprocess.Popen[bytes], IO[bytes]]] = []

    def start(self, name: str, args: Sequence[str], env: Mapping[str, str]) -> None:
        """Start `args` in its own session (Ctrl-C reaches only us), output to a log file."""
        log = (self._log_dir / f"{name}.log").open("wb")
        proc = subprocess.Popen(
            list(args), cwd=ROOT, env=dict(env), stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=_die_with_parent,
        )
        self._procs.append((name, proc, log))

    def pid(self, name: str) -> int:
        """The process id of the child called `name`."""
        return next(proc.pid for n, proc, _ in self._procs if n == name)

    def log_tail(self, name: str, lines: int = 30) -> str:
        """The last lines a child wrote, to explain a failed start."""
        path = self._log_dir / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def check_alive(self) -> None:
        """Raise with the child's own output if any child has exited."""
        for name, proc, _ in self._procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited ({proc.returncode}):\n{self.log_tail(name)}")

    def stop_all(self) -> None:
        """SIGTERM every child, wait up to 5 s, then SIGKILL the stragglers."""
        for _, proc, _ in self._procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.terminate()
        for _, proc, log in self._procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
            log.close()
        self._procs.clear()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used (Linux /proc): contention-proof cost."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def sigterm_as_exit() -> Iterator[None]:
    """Turn SIGTERM into SystemExit so `finally` blocks (child clean-up) run."""

    def handler(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def wait_http(children: Children, url: str, timeout: float = 30.0) -> None:
    """Poll `url` until it answers 200; fail fast if a child died, or after `timeout`."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        children.check_alive()
        try:
            with socket.create_connection(_host_port(url), timeout=1):
                pass
            status = asyncio.run(_get_status(url))
            if status == 200:
                return
            last = f"HTTP {status}"
        except OSError as exc:
            last = type(exc).__name__
        time.sleep(0.1)
    raise RuntimeError(f"{url} not ready after {timeout:.0f} s ({last})")


def _host_port(url: str) -> tuple[str, int]:
    host, _, rest = url.split("://", 1)[1].partition(":")
    return host, int(rest.split("/", 1)[0])


async def _get_status(url: str) -> int:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        await response.read()
        return response.status


def run_load(
    url: str,
    body: bytes,
    *,
    concurrency: int,
    duration: float,
    headers: Mapping[str, str] | None = None,
    expect_tail: bytes | None = None,
    max_requests: int = 1_000_000,
    first: bytes | None = None,
    raw: bool = False,
) -> dict[str, Any]:
    """Run the load client in its own process; return its JSON summary.

    With `first`, it also times each request until those bytes (the first token) arrive:
    `ttft_p50_ms` / `ttft_p95_ms` in the summary. With `raw`, every latency (and first-token
    time) in ms too, as `latencies_ms` (and `firsts_ms`), to merge several runs' percentiles.
    """
    spec = {
        "url": url, "body": body.decode(), "concurrency": concurrency, "duration": duration,
        "headers": dict(headers or {}), "max_requests": max_requests,
        "expect_tail": expect_tail.decode() if expect_tail else None,
        "first": first.decode() if first else None, "raw": raw,
    }
    done = subprocess.run(
        [sys.executable, "-m", "bench._common", "load", json.dumps(spec)],
        cwd=ROOT, env=child_env(), capture_output=True, timeout=duration + 60,
        preexec_fn=_die_with_parent, check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"load client failed:\n{done.stderr.decode(errors='replace')}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


async def _load(spec: dict[str, Any]) -> dict[str, Any]:
    """Keep `concurrency` requests in flight until `duration` passes; read every body to EOF."""
    url, body = spec["url"], spec["body"].encode()
    headers = {"Content-Type": "application/json", **spec["headers"]}
    expect = spec["expect_tail"].encode() if spec["expect_tail"] else None
    first = spec["first"].encode() if spec.get("first") else None
    latencies: list[float] = []
    firsts: list[float] = []  # seconds until `first` arrived
    errors: list[str] = []
    remaining: int = spec["max_requests"]
    timeout = aiohttp.ClientTimeout(total=30)
    connector = aiohttp.TCPConnector(limit=spec["concurrency"])
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        deadline = time.perf_counter() + spec["duration"]

        async def worker() -> None:
            nonlocal remaining
            while time.perf_counter() < deadline and remaining > 0:
                remaining -= 1
                started = time.perf_counter()
                try:
                    async with session.post(url, data=body, headers=headers) as response:
                        if first is None:
                            data = await response.read()  # the whole stream, to its last byte
                        else:
                            data = await _read_timing_first(response, first, started, firsts)
                        status = response.status
                except (aiohttp.ClientError, TimeoutError) as exc:
                    errors.append(type(exc).__name__)
                    continue
                if status != 200 or (expect is not None and expect not in data[-1024:]):
                    errors.append(f"HTTP {status}: {data[-200:]!r}")
                    continue
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(spec["concurrency"])))
        elapsed = time.perf_counter() - started
    summary = summarise(latencies, errors, elapsed)
    if first is not None:
        ordered = sorted(firsts)
        for name, q in (("ttft_p50_ms", 0.5), ("ttft_p95_ms", 0.95)):
            summary[name] = ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 \
                if ordered else float("nan")
    if spec.get("raw"):
        summary["latencies_ms"] = [1000 * x for x in latencies]
        summary["firsts_ms"] = [1000 * x for x in firsts]
    return summary


async def _read_timing_first(
    response: aiohttp.ClientResponse, first: bytes, started: float, firsts: list[float]
) -> bytes:
    """The whole body, noting when `first` arrived (a chunk boundary may split it)."""
    parts: list[bytes] = []
    seen = False
    async for chunk in response.content.iter_any():
        parts.append(chunk)
        if not seen and first in b"".join(parts[-2:]):
            seen = True
            firsts.append(time.perf_counter() - started)
    return b"".join(parts)


def summarise(latencies: list[float], errors: list[str], elapsed: float) -> dict[str, Any]:
    """Requests per second (successes only) and latency percentiles in ms."""
    ordered = sorted(latencies)

    def pct(q: float) -> float:
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    return {
        "requests": len(ordered), "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "elapsed": elapsed, "rps": len(ordered) / elapsed if elapsed else 0.0,
        "p50_ms": pct(0.50), "p95_ms": pct(0.95), "p99_ms": pct(0.99),
    }


def rounds_main(
    doc: str, run: Callable[[argparse.Namespace], int], *, rounds: int = 3,
    extra: Callable[[argparse.ArgumentParser], None] | None = None,
) -> None:
    """The command line of a bench that alternates rounds of fixed-length load points."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per point")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds per server, once")
    parser.add_argument("--rounds", type=int, default=rounds, help="alternating rounds; median")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--check", action="store_true", help="exit 1 if under target or errors")
    if extra is not None:
        extra(parser)
    args = parser.parse_args()
    try:
        sys.exit(run(args))
    except KeyboardInterrupt:  # `run` has stopped every child in its `finally` by now
        print("\ninterrupted; all bench processes stopped", file=sys.stderr)
        sys.exit(130)


DEMO_SPECIALIST = "d0000000-0000-4000-8000-00000000de01"


def paired_cpu(
    variants: Mapping[str, Mapping[str, Any]], *, blocks: int, per_block: int, message: str,
    endpoints: Sequence[str] = ("send", "stream"), headers: Mapping[str, str] | None = None,
) -> dict[str, list[float]]:
    """CPU us per request of one app per variant (settings overrides), all in this process,
    in blocks of `per_block` requests that rotate between them; keys "endpoint variant".

    Every app shares the process, the event loop and the machine's state at each moment, so
    a neighbour's burst hits each side of a pair alike. The demo provider makes the portal's
    own work the whole of each request, so a variant's cost ratio is an upper bound.
    """
    import logging

    import httpx

    from backend.main import create_app
    from backend.tests.support import make_settings

    logging.disable(logging.WARNING)
    names = list(variants)

    async def run_blocks(tmp: Path) -> dict[str, list[float]]:
        (tmp / "specialists.yaml").write_text(
            f'{{"specialists": [{{"id": "{DEMO_SPECIALIST}", "name": "d", "provider": "demo", '
            f'"model": "demo-echo"}}]}}'
        )
        costs: dict[str, list[float]] = {}
        body = {"specialist_id": DEMO_SPECIALIST, "message": message}
        async with contextlib.AsyncExitStack() as stack:
            clients = {}
            for name in names:
                (tmp / name).mkdir()
                app = create_app(make_settings(
                    tmp / name, rate_limit_requests=10**12,
                    specialists_file=tmp / "specialists.yaml", **variants[name],
                ))
                await stack.enter_async_context(app.router.lifespan_context(app))
                clients[name] = await stack.enter_async_context(httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app), base_url="http://portal",
                    headers=dict(headers or {}),
                ))
            for block in range(blocks + 1):
                shift = block % len(names)
                for endpoint in endpoints:
                    for name in names[shift:] + names[:shift]:
                        started = time.process_time()
                        for _ in range(per_block):
                            response = await clients[name].post(f"/chat/{endpoint}", json=body)
                            assert response.status_code == 200, response.text
                        if block:  # block 0 warms every app up
                            costs.setdefault(f"{endpoint} {name}", []).append(
                                (time.process_time() - started) / per_block * 1e6
                            )
        return costs

    with tempfile.TemporaryDirectory(prefix="bench_paired_") as tmp_name:
        return asyncio.run(run_blocks(Path(tmp_name)))


def _main() -> None:
    parser = argparse.ArgumentParser(description="bench helpers (internal)")
    parser.add_argument("command", choices=["load"])
    parser.add_argument("spec", help="JSON load spec (see run_load)")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(_load(json.loads(args.spec)))))


if __name__ == "__main__":
    _main()
