"""A real OpenID provider for the browser sign-in tests: panva's `oidc-provider` run with Node.

Its npm package is pinned in `oidc/package.json` and `oidc/package-lock.json`, installed by
`.ci/run` with `npm ci`. On a fresh clone the first test to need it runs that `npm ci` itself
(once, under a file lock, within INSTALL_SECONDS), so the README's one test command runs these
tests too. Without Node, npm, or a registry to install from, the tests skip, except in CI,
where they fail.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from backend.tests.support import IN_CI

HERE = Path(__file__).parent / "oidc"
SCRIPT = HERE / "provider.mjs"
PACKAGE = HERE / "node_modules" / "oidc-provider" / "package.json"
# Held while one test process installs, so parallel runs wait for it instead of two `npm ci`
# deleting each other's node_modules (git-ignored).
INSTALL_LOCK = HERE / ".npm-ci.lock"
STARTUP_SECONDS = 20.0
INSTALL_SECONDS = 300.0


def _missing(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"the sign-in browser tests must run in CI: {reason} (.ci/run installs it)")
    pytest.skip(reason)


def _install() -> str | None:
    """Run `npm ci` in the provider's folder unless it is installed; why not, or None."""
    npm = shutil.which("npm")
    if npm is None:
        return f"oidc-provider is not installed and there is no npm (cd {HERE} && npm ci)"
    with INSTALL_LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if PACKAGE.is_file():
            return None  # another process installed it while this one waited
        try:
            done = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund"], cwd=HERE, capture_output=True,
                text=True, timeout=INSTALL_SECONDS, check=False,
            )
        except subprocess.TimeoutExpired:
            return f"`npm ci` in {HERE} took over {INSTALL_SECONDS:.0f} s (no registry?)"
        if done.returncode != 0 or not PACKAGE.is_file():
            return f"`npm ci` in {HERE} failed: {done.stderr.strip()[-1000:]}"
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@asynccontextmanager
async def oidc_provider(
    *, client_id: str, client_secret: str, portal_url: str, user: dict[str, Any],
    access_token_seconds: int = 3600,
) -> AsyncIterator[str]:
    """Run the provider for one portal's client on 127.0.0.1; yield its issuer URL."""
    node = shutil.which("node")
    if node is None:
        _missing("no node on PATH")
    if not PACKAGE.is_file():
        problem = await asyncio.to_thread(_install)
        if problem is not None:
            _missing(problem)
    config = {
        "port": _free_port(), "client_id": client_id, "client_secret": client_secret,
        "redirect_uri": f"{portal_url}/auth/callback",
        "post_logout_redirect_uri": f"{portal_url}/", "user": user,
        "access_token_seconds": access_token_seconds,
    }
    process = await asyncio.create_subprocess_exec(
        str(node), str(SCRIPT), json.dumps(config), cwd=HERE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None and process.stderr is not None
        async with asyncio.timeout(STARTUP_SECONDS):
            line = await process.stdout.readline()
        if not line.startswith(b"ready "):
            error = (await process.stderr.read()).decode(errors="replace")
            raise RuntimeError(f"oidc-provider did not start: {error[-2000:]}")
        yield line.decode().split()[1]
    finally:
        if process.returncode is None:
            process.terminate()
            await process.wait()
