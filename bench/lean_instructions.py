"""bench_lean's `instructions` mode: relay and portal under callgrind, instructions per request.

Requests/s on a shared machine moves by a quarter between rounds; the number of instructions
a server executes per request does not (the same code, the same requests: within about 1 %
from one run to the next). Each server runs under `valgrind --tool=callgrind` (every thread
of the process, the usage writer's included; what the kernel does is not counted), is warmed
up, has its counters zeroed, serves `--requests` requests per endpoint, and has them dumped.
The two servers run side by side: contention slows them but changes no count.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench._common import Children, free_port, wait_http
from bench.bench_auth import signing_material
from bench.bench_chat import uvicorn_args
from bench.lean_servers import (
    ENDPOINTS,
    Endpoint,
    endpoints,
    load,
    portal_env,
    portal_folder,
    relay_env,
    start_fake,
)

START_TIMEOUT = 900.0  # a Python server's start-up under callgrind: one to three minutes


def _under_callgrind(out: Path, app: str, port: int) -> list[str]:
    """The bench's usual one-worker uvicorn command, run by callgrind."""
    return ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
            *uvicorn_args(app, port)]


def _count(children: Children, name: str, out: Path, ep: Endpoint, requests: int) -> float:
    """Instructions per request of `name` on `ep`: counters zeroed, the load, a dump."""
    pid = str(children.pid(name))
    load(ep, 4, 600, max_requests=min(200, requests))  # warm: caches, the token, the pool
    subprocess.run(["callgrind_control", "-z", pid], check=True, capture_output=True)
    done = load(ep, 4, 600, max_requests=requests)
    if done["errors"]:
        raise RuntimeError(f"{name}: {done['errors']} failed requests: {done['first_error']}")
    before = set(out.parent.glob(out.name + ".*"))
    subprocess.run(["callgrind_control", "-d", pid], check=True, capture_output=True)
    deadline = time.monotonic() + 60
    while True:  # the dump is complete once its last line, `totals:`, is written
        dumps = set(out.parent.glob(out.name + ".*")) - before
        text = next(iter(dumps)).read_text() if dumps else ""
        if "\ntotals:" in text:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name}: callgrind wrote no complete dump")
        time.sleep(0.2)
    for line in text.splitlines():
        if line.startswith("summary:"):
            return int(line.split()[1]) / done["requests"]
    raise RuntimeError(f"{name}: no summary line in the callgrind dump")


def instructions(args: argparse.Namespace) -> int:
    """Relay and portal (everything on), instructions per request per endpoint."""
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        print("valgrind is not installed (Debian: apt-get install valgrind)", file=sys.stderr)
        return 2
    print(f"bench_lean instructions: {args.requests} requests per endpoint, concurrency 4, "
          "relay and portal under callgrind (a few minutes: start-up alone takes one or two)",
          flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-lean-cg-") as tmp_name:
        tmp = Path(tmp_name)
        children = Children(tmp)
        try:
            base = start_fake(children, tmp)
            jwks, token = signing_material()
            relay, portal = free_port(), free_port()
            children.start("relay", _under_callgrind(
                tmp / "relay.cg", "bench.passthrough:app", relay), relay_env(base))
            children.start("portal", _under_callgrind(
                tmp / "portal.cg", "backend.main:app", portal),
                portal_env(portal_folder(tmp, "portal"), base, jwks))
            for port in (relay, portal):
                wait_http(children, f"http://127.0.0.1:{port}/health", timeout=START_TIMEOUT)
            eps = {"relay": endpoints(relay, {}, portal=False),
                   "portal": endpoints(portal, {"Authorization": f"Bearer {token}"}, portal=True)}
            print(f"{'endpoint':10s} {'relay':>14s} {'portal':>14s} {'relay/portal':>13s}")
            for name in ENDPOINTS:
                counts = {server: _count(children, server, tmp / f"{server}.cg",
                                         eps[server][name], args.requests)
                          for server in ("relay", "portal")}
                print(f"{name:10s} {counts['relay'] / 1e6:9.3f} M/req {counts['portal'] / 1e6:9.3f}"
                      f" M/req {100 * counts['relay'] / counts['portal']:12.1f}%", flush=True)
        finally:
            children.stop_all()
    return 0
