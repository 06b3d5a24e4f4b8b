"""What the front door stops: the attacks of issues 9 and 18, before and after.

    python -m bench.bench_attacks                    # every case: about 8 minutes
    python -m bench.bench_attacks --cases body trickle --trickle-cap 45

Two servers started as the README does (`python -m uvicorn <app>`, one worker, front-door
settings at their defaults, on a free 127.0.0.1 port), a fresh process for every case so
one case's memory or sockets never colour the next:
- **shipped**: `backend.main:app`;
- **unguarded**: `bench._frontdoor_off:app`, the same app with the front door removed
  (header guard, body limits, WebSocket bounds, admin throttle): the "before".
Each server gets its own SQLite file, AUTH_MODE=none, an ADMIN_TOKEN (so the admin routes
exist) and a rate limit high enough never to refuse what is being measured. Every loop is
bounded (by bytes, by a count or by seconds); every socket is on 127.0.0.1. The table is
printed at the end, and the figures as JSON on the last line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import aiohttp
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

# Raw-socket clients and /proc readers: stdlib only, installed with the package.
from backend.tests.frontdoor.wire import exchange, peak_rss_kib, rss_kib
from bench._common import Children, child_env, free_port, wait_http

DEMO = "00000000-0000-4000-8000-000000000001"
ADMIN_TOKEN = "bench-attacks-admin-token-0123456789"
APPS = {"shipped": "backend.main:app", "unguarded": "bench._frontdoor_off:app"}
BODY_BYTES = 200_000_000  # "a 200 MB body"
PIECE = 64 * 1024
WS_MESSAGE = 16 * 2**20  # uvicorn's default ws_max_size: the largest it used to queue
WS_MESSAGES = 8
IDLE_TRIES = 1000  # sockets the idle case tries to hold at most
GUESS_SECONDS = 5.0

Case = Callable[[str, int, argparse.Namespace], Coroutine[Any, Any, dict[str, Any]]]


@contextlib.contextmanager
def serving(app: str, tmp: Path, name: str, **settings: str) -> Iterator[tuple[str, int]]:
    """`python -m uvicorn app` on a free port with a fresh database; yields (URL, pid)."""
    children = Children(tmp)
    port = free_port()
    children.start(name, [
        sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port),
        "--log-level", "warning",
    ], child_env(
        ENVIRONMENT="test", AUTH_MODE="none", USER_HASH_SECRET="bench-secret",
        DATABASE_URL=f"sqlite:///{tmp / f'{name}.db'}", USAGE_SPOOL_DIR=str(tmp / name),
        ADMIN_TOKEN=ADMIN_TOKEN, RATE_LIMIT_REQUESTS=str(10**9), LOG_LEVEL="WARNING",
        OPENAI_API_KEY="", ANTHROPIC_API_KEY="", GOOGLE_API_KEY="", **settings,
    ))
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(children, f"{url}/health", timeout=60)
        yield url, children.pid(name)
    finally:
        children.stop_all()


async def warm_up(url: str) -> None:
    """One ordinary chat request, so the first measurement pays no import or cache cost."""
    async with aiohttp.ClientSession() as session, session.post(
        f"{url}/chat/send", json={"specialist_id": DEMO, "message": "hi"}
    ) as response:
        await response.read()


def _post_head(length: int | None) -> bytes:
    framing = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    return (
        "POST /chat/send HTTP/1.1\r\nHost: portal\r\nContent-Type: application/json\r\n"
        f"{framing}\r\n\r\n"
    ).encode()


def _big_body(chunked: bool) -> tuple[bytes, list[bytes]]:
    """A valid JSON chat request of BODY_BYTES, as a head and pieces to write."""
    prefix = b'{"specialist_id":"' + DEMO.encode() + b'","message":"'
    suffix = b'"}'
    pieces = [prefix] + [b"x" * PIECE] * ((BODY_BYTES - len(prefix) - len(suffix)) // PIECE)
    pieces.append(suffix)
    if not chunked:
        return _post_head(sum(map(len, pieces))), pieces
    frames = [b"%x\r\n%s\r\n" % (len(p), p) for p in pieces] + [b"0\r\n\r\n"]
    return _post_head(None), frames


async def big_body(url: str, pid: int, chunked: bool) -> dict[str, Any]:
    """A 200 MB valid-JSON POST /chat/send: the answer, its time, the server's peak growth."""
    await warm_up(url)
    head, pieces = _big_body(chunked)
    before = peak_rss_kib(pid)
    answer = await exchange(url, head, pieces, within=180)
    return {
        "status": answer.status, "seconds": round(answer.seconds, 3),
        "sent_mb": round(answer.sent / 1e6, 1),
        "peak_growth_mib": round((peak_rss_kib(pid) - before) / 1024, 1),
    }


async def body_declared(url: str, pid: int, args: argparse.Namespace) -> dict[str, Any]:
    """The 200 MB body with its Content-Length declared."""
    return await big_body(url, pid, chunked=False)


async def body_chunked(url: str, pid: int, args: argparse.Namespace) -> dict[str, Any]:
    """The 200 MB body sent chunked (no length known in advance)."""
    return await big_body(url, pid, chunked=True)


async def trickle(url: str, pid: int, args: argparse.Namespace) -> dict[str, Any]:
    """Content-Length: 100, then one byte a second; waited for at most --trickle-cap s."""
    try:
        answer = await exchange(
            url, _post_head(100), [b"{"] * 100, gap=1.0, within=args.trickle_cap
        )
    except TimeoutError:
        return {"status": None, "seconds": None, "note": f"no answer after {args.trickle_cap:g} s"}
    return {"status": answer.status, "seconds": round(answer.seconds, 1), "closed": answer.closed}


async def huge_header(url: str, mib: int) -> dict[str, Any]:
    """One GET with a `mib` MiB header; meanwhile another client polls /health."""
    attack = asyncio.create_task(exchange(
        url, b"GET /health HTTP/1.1\r\nHost: portal\r\nX-Big: ",
        [b"a" * PIECE] * (mib * 2**20 // PIECE) + [b"\r\n\r\n"], within=180,
    ))
    waits: list[float] = []
    timeout = aiohttp.ClientTimeout(total=180)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        while not attack.done() or len(waits) < 5:
            started = time.monotonic()
            async with session.get(f"{url}/health") as response:
                await response.read()
            waits.append(time.monotonic() - started)
            await asyncio.sleep(0.02)
    answer = await attack
    return {
        "status": answer.status, "seconds": round(answer.seconds, 2),
        "longest_other_wait_s": round(max(waits), 3),
    }


async def header_64(url: str, pid: int, args: argparse.Namespace) -> dict[str, Any]:
    """A 64 MiB header."""
    return await huge_header(url, 64)


async def header_128(url: str, pid: int, args: argparse.Namespace) -> dict[str, Any]:
    """A 128 MiB header."""
    return await huge_header(url, 128)


def _chat(message: str) -> str:
    return json.dumps({"specialist_id": DEMO, "message": message})


async def _fill(url: str) -> ClientConnection | str:
    """A socket whose first message keeps the demo answering (slowly), then 8 × 16 MiB;
    the handshake's refusal as a string."""
    try:
        ws = await connect(url, max_size=None, compression=None, open_timeout=30)
    except InvalidStatus as exc:
        return f"HTTP {exc.response.status_code}"
    except InvalidHandshake as exc:
        return type(exc).__name__
    big = _chat("x" * (WS_MESSAGE - len(_chat(""))))
    try:
        await ws.send(_chat("a long answer " * 50))
        for _ in range(WS_MESSAGES):
            await ws.send(big)
    except ConnectionClosed:
        pass  # refused: the close code says why
    return ws


async def ws_memory(url: str, pid: int, connections: int) -> dict[str, Any]:
    """`connections` sockets from one client, each sending 8 × 16 MiB behind a slow answer."""
    socket_url = url.replace("http://", "ws://", 1) + "/chat/ws"
    await warm_up(url)
    before = rss_kib(pid)
    got = await asyncio.gather(*(_fill(socket_url) for _ in range(connections)))
    await asyncio.sleep(1.0)  # what the server read is held or refused by now
    after = rss_kib(pid)
    sockets = [ws for ws in got if not isinstance(ws, str)]
    codes: dict[str, int] = {}
    for ws in sockets:
        key = str(ws.close_code) if ws.close_code is not None else "open"
        codes[key] = codes.get(key, 0) + 1
    refused = [ws for ws in got if isinstance(ws, str)]
    if refused:
        codes[f"refused at handshake ({refused[0]})"] = len(refused)
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    return {
        "rss_before_mib": round(before / 1024), "rss_after_mib": round(after / 1024),
        "close_codes": codes,
    }


async def ws_6(url: str, pid: int, args: argparse.Namespace) -> dict[str, Any]:
    """6 sockets × 8 × 16 MiB."""
    return await ws_memory(url, pid, 6)


async def ws_20(url: str, pid: int, args: argparse.Namespace) -> dict[str, Any]:
    """20 sockets × 8 × 16 MiB."""
    return await ws_memory(url, pid, 20)


async def idle_sockets(url: str, pid: int, args: argparse.Namespace) -> dict[str, Any]:
    """Idle WebSockets one client opens before one is refused (at most IDLE_TRIES)."""
    socket_url = url.replace("http://", "ws://", 1) + "/chat/ws"
    held: list[ClientConnection] = []
    refusal = None
    try:
        for _ in range(IDLE_TRIES):
            held.append(await connect(socket_url, open_timeout=10))
    except InvalidStatus as exc:
        refusal = f"HTTP {exc.response.status_code} at the handshake"
    except (InvalidHandshake, OSError, TimeoutError) as exc:
        refusal = type(exc).__name__
    finally:
        await asyncio.gather(*(ws.close() for ws in held), return_exceptions=True)
    return {
        "held": len(held),
        "then": refusal or f"none refused (the bench stops at {IDLE_TRIES})",
    }


async def admin_guesses(url: str, pid: int, args: argparse.Namespace) -> dict[str, Any]:
    """Wrong admin tokens, one after another for GUESS_SECONDS: how many are checked."""
    statuses: dict[int, int] = {}
    first_429 = None
    started = time.monotonic()
    async with aiohttp.ClientSession() as session:
        n = 0
        while time.monotonic() - started < GUESS_SECONDS:
            n += 1
            headers = {"Authorization": f"Bearer wrong-guess-{n:06d}"}
            async with session.get(f"{url}/usage/status", headers=headers) as response:
                await response.read()
                statuses[response.status] = statuses.get(response.status, 0) + 1
                if response.status == 429 and first_429 is None:
                    first_429 = n
    return {
        "guesses_checked_401": statuses.get(401, 0), "refused_429": statuses.get(429, 0),
        "first_429_at_guess": first_429,
    }


CASES: dict[str, tuple[str, Case, dict[str, str]]] = {
    "body-declared": ("200 MB body, Content-Length", body_declared, {}),
    "body-chunked": ("200 MB body, chunked", body_chunked, {}),
    "trickle": ("Content-Length: 100 at 1 byte/s", trickle, {}),
    "header-64": ("one 64 MiB header", header_64, {}),
    "header-128": ("one 128 MiB header", header_128, {}),
    # The demo answer is slowed (0.2 s a chunk) so that messages queue behind it.
    "ws-6": ("6 WebSockets × 8 × 16 MiB", ws_6, {"DEMO_CHUNK_DELAY_SECONDS": "0.2"}),
    "ws-20": ("20 WebSockets × 8 × 16 MiB", ws_20, {"DEMO_CHUNK_DELAY_SECONDS": "0.2"}),
    "idle-ws": ("idle WebSockets from one client", idle_sockets, {}),
    "admin-guess": (f"wrong admin tokens in {GUESS_SECONDS:g} s", admin_guesses, {}),
}
GROUPS = {
    "body": ["body-declared", "body-chunked"], "header": ["header-64", "header-128"],
    "ws": ["ws-6", "ws-20"],
}


def main() -> None:
    """Run the chosen cases on both servers; print the table and the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--cases", nargs="+", default=list(CASES),
        help=f"cases or groups ({', '.join([*CASES, *GROUPS])})",
    )
    parser.add_argument(
        "--trickle-cap", type=float, default=45.0, help="seconds to wait for a trickle's answer"
    )
    args = parser.parse_args()
    chosen = [c for name in args.cases for c in GROUPS.get(name, [name])]
    unknown = [c for c in chosen if c not in CASES]
    if unknown:
        parser.error(f"unknown cases: {unknown}")
    results: dict[str, dict[str, Any]] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="bench-attacks-") as tmp:
            for case in chosen:
                label, run, settings = CASES[case]
                for server, app in APPS.items():
                    name = f"{case}-{server}"
                    with serving(app, Path(tmp), name, **settings) as (url, pid):
                        result: dict[str, Any] = asyncio.run(run(url, pid, args))
                    results.setdefault(case, {})[server] = result
                    print(f"  {label:36} {server:10} {json.dumps(result)}", flush=True)
    except KeyboardInterrupt:  # `serving` has stopped the server in its `finally`
        print("\ninterrupted; all bench processes stopped", file=sys.stderr)
        sys.exit(130)
    print(f"\n{'case':36}{'unguarded (before)':>40}   shipped (after)")
    for case, by_server in results.items():
        print(f"{CASES[case][0]:36}{_brief(by_server['unguarded']):>40}   "
              f"{_brief(by_server['shipped'])}")
    print(json.dumps(results))


def _brief(result: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in result.items() if k != "sent_mb")


if __name__ == "__main__":
    main()
