"""What identity costs: /chat/send req/s with AUTH_MODE=jwt (one cached token) vs AUTH_MODE=none.

    python -m bench.bench_auth [--duration 5] [--rounds 3] [--concurrency 16] [--warmup 1]
                               [--check]

Starts, each in its own process: bench_chat's fake OpenAI upstream, and two portals (one
uvicorn worker each, limiter and usage records on) that differ only in AUTH_MODE: `none`,
and `jwt` with a static RS256 key set (JWT_STATIC_JWKS, so no IdP process competes for the
CPU). The jwt portal gets one token for the whole run, as a busy client sends it: after the
first request it is verified from the token cache. Rounds alternate which portal goes first;
the figure is the median of the per-round ratios. Target: jwt within 5 % of none.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._common import (
    Children,
    child_env,
    free_port,
    rounds_main,
    run_load,
    sigterm_as_exit,
    wait_http,
)
from bench.bench_chat import API_KEY, chat_body, specialists_yaml, uvicorn_args

ISSUER = "https://idp.bench.invalid"
AUDIENCE = "ai-portal"
TARGET_RATIO = 0.95


def signing_material() -> tuple[dict[str, Any], str]:
    """A static JWK Set with one RSA key, and a token it verifies (valid for two hours)."""
    import jwt
    from cryptography.hazmat.primitives.asymmetric import rsa
    from jwt.algorithms import RSAAlgorithm

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(RSAAlgorithm.to_jwk(private.public_key()))
    jwk.update(kid="bench", use="sig", alg="RS256")
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "bench-user", "email": "bench@example.com",
              "groups": ["staff"], "iat": now, "exp": now + 7200}
    token = jwt.encode(claims, private, algorithm="RS256", headers={"kid": "bench"})
    return {"keys": [jwk]}, token


def start_all(children: Children, tmp: Path) -> tuple[dict[str, str], str]:
    """The fake and both portals; their /chat/send URLs and the jwt portal's token."""
    fake = free_port()
    base = f"http://127.0.0.1:{fake}/v1"
    children.start("fake", [sys.executable, "-m", "bench.bench_chat", "fake", "--port",
                            str(fake), "--chunks", "20"], child_env())
    (tmp / "specialists.yaml").write_text(specialists_yaml())
    jwks, token = signing_material()
    modes = {
        "none": {"AUTH_MODE": "none"},
        "jwt": {"AUTH_MODE": "jwt", "JWT_STATIC_JWKS": json.dumps(jwks), "JWT_ISSUER": ISSUER,
                "JWT_AUDIENCE": AUDIENCE},
    }
    urls = {}
    for mode, extra in modes.items():
        port = free_port()
        children.start(mode, uvicorn_args("backend.main:app", port), child_env(
            ENVIRONMENT="development", OPENAI_BASE_URL=base, OPENAI_API_KEY=API_KEY,
            DATABASE_URL=f"sqlite:///{tmp / f'usage-{mode}.db'}",
            USAGE_SPOOL_DIR=str(tmp / f"spool-{mode}"),
            SPECIALISTS_FILE=str(tmp / "specialists.yaml"),
            RATE_LIMIT_REQUESTS=str(10**12), LOG_LEVEL="WARNING", **extra,
        ))
        urls[mode] = f"http://127.0.0.1:{port}/chat/send"
    wait_http(children, f"http://127.0.0.1:{fake}/health")
    for url in urls.values():
        wait_http(children, url.replace("/chat/send", "/health"))
    return urls, token


def run(args: argparse.Namespace) -> int:
    """Measure both modes in alternating rounds; print req/s and the ratio."""
    print(f"bench_auth: /chat/send, concurrency {args.concurrency}, {args.duration:g} s per "
          f"point, {args.rounds} round(s)")
    samples: dict[str, list[float]] = {"none": [], "jwt": []}
    ratios: list[float] = []
    errors = 0
    with tempfile.TemporaryDirectory(prefix="bench_auth_") as tmp_name, sigterm_as_exit():
        children = Children(Path(tmp_name))
        try:
            urls, token = start_all(children, Path(tmp_name))
            headers = {"none": {"X-User-Email": "bench@example.com"},
                       "jwt": {"Authorization": f"Bearer {token}"}}
            body = chat_body()
            for mode in ("none", "jwt"):
                run_load(urls[mode], body, concurrency=args.concurrency, duration=args.warmup,
                         headers=headers[mode], expect_tail=b'"request_id"')
            for round_no in range(args.rounds):
                order = ("none", "jwt") if round_no % 2 == 0 else ("jwt", "none")
                got = {}
                for mode in order:
                    result = run_load(urls[mode], body, concurrency=args.concurrency,
                                      duration=args.duration, headers=headers[mode],
                                      expect_tail=b'"request_id"')
                    errors += result["errors"]
                    if result["first_error"]:
                        print(f"  ! {mode}: {result['errors']} errors, first: "
                              f"{result['first_error']}")
                    got[mode] = result["rps"]
                    samples[mode].append(result["rps"])
                ratios.append(got["jwt"] / max(got["none"], 1e-9))
                print(f"  round {round_no + 1}: none {got['none']:7.0f} req/s   "
                      f"jwt {got['jwt']:7.0f} req/s   jwt/none {ratios[-1]:6.1%}", flush=True)
        finally:
            children.stop_all()
    ratio = statistics.median(ratios)
    verdict = "ok" if ratio >= TARGET_RATIO else "UNDER TARGET"
    print(f"\nmedian req/s: none {statistics.median(samples['none']):.0f}, "
          f"jwt {statistics.median(samples['jwt']):.0f}; jwt/none median {ratio:.1%} "
          f"[{min(ratios):.0%}-{max(ratios):.0%}] (target >= {TARGET_RATIO:.0%}): {verdict}; "
          f"load errors: {errors}")
    return 1 if args.check and (ratio < TARGET_RATIO or errors) else 0


def main() -> None:
    """Command line: `python -m bench.bench_auth --help`."""
    rounds_main(__doc__, run)


if __name__ == "__main__":
    main()
