"""bench_lean's servers: the fake upstream, the relay and the everything-on portal, each in
its own process on 127.0.0.1, their four endpoints, and where each runs (pinned CPUs)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench._common import (
    Children,
    child_env,
    free_port,
    installed,
    pin,
    run_load,
    split_cpus,
    wait_http,
)
from bench.bench_auth import AUDIENCE, ISSUER, signing_material
from bench.bench_chat import (
    API_KEY,
    HISTORY,
    MESSAGE,
    SPECIALIST,
    SPECIALIST_ID,
    chat_body,
    specialists_yaml,
    uvicorn_args,
)

FIRST_TOKEN = b"word0"  # the fake's first text chunk
ENDPOINTS = ("send", "stream", "v1", "v1-stream")


@dataclass(frozen=True)
class Endpoint:
    """One endpoint of one server: URL, body, headers, and how a complete answer ends."""

    url: str
    body: bytes
    headers: dict[str, str]
    tail: bytes | None
    streaming: bool


def v1_body(*, stream: bool) -> bytes:
    """An OpenAI-shaped request naming the bench specialist, with the same conversation."""
    messages = [*HISTORY, {"role": "user", "content": MESSAGE}]
    body: dict[str, Any] = {"model": SPECIALIST_ID, "messages": messages}
    if stream:
        body.update(stream=True, stream_options={"include_usage": True})
    return json.dumps(body).encode()


def portal_env(tmp: Path, base: str, jwks: dict[str, Any], **extra: str) -> dict[str, str]:
    """The portal's environment with every feature on."""
    return child_env(
        ENVIRONMENT="development", OPENAI_BASE_URL=base, OPENAI_API_KEY=API_KEY,
        DATABASE_URL=f"sqlite:///{tmp / 'portal.db'}", USAGE_SPOOL_DIR=str(tmp / "spool"),
        SPECIALISTS_FILE=str(tmp / "specialists.yaml"), SPECIALISTS_SOURCE="database",
        AUTH_MODE="jwt", JWT_STATIC_JWKS=json.dumps(jwks), JWT_ISSUER=ISSUER,
        JWT_AUDIENCE=AUDIENCE, BUDGET_BACKEND="memory", BUDGET_USER_USD="1000000",
        BUDGETS=json.dumps({"portal": 1e9}), METRICS_ENABLED="true", PII_DEFAULT_MODE="mask",
        RATE_LIMIT_REQUESTS=str(10**12), RATE_LIMIT_WINDOW_SECONDS="3600",
        LOG_LEVEL="WARNING", **extra,
    )


def endpoints(port: int, headers: dict[str, str], *, portal: bool) -> dict[str, Endpoint]:
    """The four endpoints of a portal or relay listening on `port`."""
    root = f"http://127.0.0.1:{port}"
    send_tail = b'"request_id"' if portal else None
    stream_tail = b'"is_final":true' if portal else b"data: [DONE]"
    return {
        "send": Endpoint(f"{root}/chat/send", chat_body(), headers, send_tail, False),
        "stream": Endpoint(f"{root}/chat/stream", chat_body(), headers, stream_tail, True),
        "v1": Endpoint(f"{root}/v1/chat/completions", v1_body(stream=False), headers,
                       b'"usage"', False),
        "v1-stream": Endpoint(f"{root}/v1/chat/completions", v1_body(stream=True), headers,
                              b"data: [DONE]", True),
    }


def start_fake(children: Children, tmp: Path) -> str:
    """The fake upstream; its base URL. Also writes the specialists file."""
    fake = free_port()
    children.start("fake", [sys.executable, "-m", "bench.bench_chat", "fake", "--port",
                            str(fake), "--chunks", "20"], child_env())
    (tmp / "specialists.yaml").write_text(specialists_yaml())
    wait_http(children, f"http://127.0.0.1:{fake}/health")
    return f"http://127.0.0.1:{fake}/v1"


def start_portal(
    children: Children, name: str, tmp: Path, base: str, jwks: dict[str, Any], workers: int = 1
) -> int:
    """A portal with every feature on; its port."""
    port = free_port()
    args = uvicorn_args("backend.main:app", port)
    args[args.index("--workers") + 1] = str(workers)
    extra = {}
    if workers > 1:  # metrics across workers need prometheus-client's shared directory
        (tmp / f"prom-{name}").mkdir()
        extra["PROMETHEUS_MULTIPROC_DIR"] = str(tmp / f"prom-{name}")
    children.start(name, args, portal_env(portal_folder(tmp, name), base, jwks, **extra))
    wait_http(children, f"http://127.0.0.1:{port}/health", timeout=60)
    return port


def portal_folder(tmp: Path, name: str) -> Path:
    """A portal's own folder (its database, spool and specialists file live there)."""
    folder = tmp / name
    folder.mkdir()
    (folder / "specialists.yaml").write_text(specialists_yaml())
    return folder


def relay_env(base: str) -> dict[str, str]:
    """The relay's environment: the fake upstream, its key and the bench specialist."""
    return child_env(
        OPENAI_BASE_URL=base, OPENAI_API_KEY=API_KEY, PASSTHROUGH_SPECIALIST=json.dumps(SPECIALIST),
    )


def start_all(children: Children, tmp: Path) -> tuple[dict[str, dict[str, Endpoint]], str]:
    """Fake, relay and portal; the endpoints per server, and a word on LiteLLM's proxy."""
    base = start_fake(children, tmp)
    jwks, token = signing_material()
    relay = free_port()
    children.start("relay", uvicorn_args("bench.passthrough:app", relay), relay_env(base))
    wait_http(children, f"http://127.0.0.1:{relay}/health")
    portal = start_portal(children, "portal", tmp, base, jwks)
    auth = {"Authorization": f"Bearer {token}"}
    servers = {"relay": endpoints(relay, {}, portal=False),
               "portal": endpoints(portal, auth, portal=True)}
    # Never run here: it is not on the development machines, so there is nothing to write
    # and check its start-up against; the line says so rather than leave it out silently.
    litellm = ("installed, but not run by this bench" if installed("litellm")
               else "not installed: skipped")
    return servers, litellm


def place(children: Children, servers: Iterable[int]) -> str:
    """Each server under test on the last CPU (one at a time is loaded, so each has it to
    itself), the fake upstream and the load clients on the others: a server's figures are
    then its own, not a share of a core it fights the client for."""
    split = split_cpus()
    if split is None:
        return "one CPU: servers, fake upstream and load client share it"
    server_cpus, other_cpus = split
    pin(os.getpid(), other_cpus)  # the load clients, started from here, inherit it
    pin(children.pid("fake"), other_cpus)
    for pid in servers:
        pin(pid, server_cpus)
    return (f"servers under test on CPU {sorted(server_cpus)}, fake upstream and load client "
            f"on CPU {sorted(other_cpus)}")


def load(ep: Endpoint, concurrency: int, duration: float, **kw: Any) -> dict[str, Any]:
    """One load point against one endpoint."""
    return run_load(ep.url, ep.body, concurrency=concurrency, duration=duration,
                    headers=ep.headers, expect_tail=ep.tail,
                    first=FIRST_TOKEN if ep.streaming else None, **kw)
