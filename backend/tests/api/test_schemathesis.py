"""schemathesis against the real app in a subprocess: zero server errors, zero mismatches.

Every operation of the OpenAPI document, every check, a bounded number of cases and a
fixed seed (so a failure reproduces with the command it prints). The admin endpoints get
the token; the WebSocket route is not in the document (its tests are in transports/).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[3]
ADMIN_TOKEN = "schemathesis-admin-token-0123456789"
DEMO = "00000000-0000-4000-8000-000000000001"
SEED = int(os.environ.get("SCHEMATHESIS_SEED", "20261201"))
MAX_EXAMPLES = int(os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "40"))

# 413 is how the server refuses a body over its limits, which the document states (maxLength,
# maxItems): a right answer to schema-violating data, missing from schemathesis's default list.
CONFIG = f"""
[checks.negative_data_rejection]
expected-statuses = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422",
                     "428", "429", "5xx"]

[[operations]]
include-name = "GET /v1/models/{{model}}"
parameters = {{ model = "{DEMO}" }}

# Whether a specialist version is valid depends on the other specialists (fallbacks without
# cycles, classification ceilings) and on the fields' own rules, which the body schema (the
# file's free-form entry) cannot state: refusals of schema-valid versions are expected
# there (422 among the accepted answers). Every other check still runs on them.
[[operations]]
include-name = "POST /admin/specialists"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "409", "422"]

[[operations]]
include-name = "POST /admin/specialists/{{specialist_id}}/versions"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "409", "422"]
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _demo_only(tmp_path: Path) -> Path:
    path = tmp_path / "specialists.yaml"
    path.write_text(
        f"specialists:\n  - id: {DEMO}\n    name: Demo\n    provider: demo\n"
        "    model: demo-echo\n    system_prompt: You are the demo.\n"
    )
    return path


def _server_env(tmp_path: Path) -> dict[str, str]:
    # Built from nothing but PATH, so no key, Redis or database of the caller's environment
    # (nor a .env file: the server runs in tmp_path) reaches the server under test.
    closed = "http://127.0.0.1:9"  # providers with a key would fail fast here, never leave
    return {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(ROOT),
        "ENVIRONMENT": "test",
        "AUTH_MODE": "none",  # the seed's behaviour; the auth modes have their own tests
        "USER_HASH_SECRET": "schemathesis-secret",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'usage.db'}",
        "USAGE_SPOOL_DIR": str(tmp_path / "spool"),
        "ADMIN_TOKEN": ADMIN_TOKEN,
        # The demo specialist alone: a specialist whose provider has no key answers 503
        # by design, which would read as a server error.
        "SPECIALISTS_FILE": str(_demo_only(tmp_path)),
        # Thousands of generated requests from one client IP: the limiter must not answer
        # them all with 429 (which is documented, so would hide every other mismatch).
        "RATE_LIMIT_REQUESTS": "1000000000",
        "OPENAI_BASE_URL": closed,
        "ANTHROPIC_BASE_URL": closed,
        "GOOGLE_BASE_URL": closed,
        "LOG_LEVEL": "WARNING",
    }


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    """`python -m uvicorn backend.main:app` on a free port; yields its base URL."""
    port = _free_port()
    log = (tmp_path / "server.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "backend.main:app", "--host", "127.0.0.1",
         "--port", str(port), "--log-level", "warning"],
        cwd=tmp_path, env=_server_env(tmp_path), stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, (tmp_path / "server.log").read_text()
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not start within 60 s"
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def test_schemathesis_finds_no_server_error_and_no_mismatch(server: str, tmp_path: Path) -> None:
    """All phases and all checks, seeded: exit code 0 means no failure of any check."""
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "SCHEMATHESIS_HOOKS": "backend.tests.api.schemathesis_hooks",
    }
    command = [
        sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "--no-color",
        "run", f"{server}/openapi.json",
        "--checks", "all",
        "--max-examples", str(MAX_EXAMPLES),
        "--seed", str(SEED),
        "--workers", "1",
        "--request-timeout", "30",
        "--header", f"Authorization: Bearer {ADMIN_TOKEN}",
        "--report", "junit", "--report-dir", str(tmp_path / "report"),
    ]
    result = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900, check=False
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-20_000:]
    # The run really exercised the API: every operation in the document was tested.
    paths = httpx.get(f"{server}/openapi.json").json()["paths"]
    operations = sum(len(methods) for methods in paths.values())
    assert operations >= 10
    assert f"Selected: {operations}/{operations}" in output, output[-5_000:]
    assert f"Tested: {operations}" in output, output[-5_000:]
    assert "0 generated" not in output
