"""Credentials: API keys of well-known formats, private key blocks and JWTs.

`SECRET_PATTERNS` is the list to extend: one entry per format, a name (for the docs and
tests, never shown to users) and a pattern; an optional check runs on each match.
`aip_` stands for this portal's own API keys: align it with the prefix the key issuer
uses (docs: README, "PII guard").
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import orjson

from backend.guard.banking import Span


@dataclass(frozen=True, slots=True)
class SecretPattern:
    """One credential format."""

    name: str
    hints: tuple[str, ...]  # every match holds one: the pattern runs only where one appears
    pattern: re.Pattern[str]
    check: Callable[[str], bool] | None = None


def _jwt_header(token: str) -> bool:
    """A JWT's first part is base64url JSON naming its algorithm."""
    head = token.split(".", 1)[0]
    try:
        decoded = orjson.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    except (binascii.Error, ValueError):
        return False
    return isinstance(decoded, dict) and "alg" in decoded


def _tail(pattern: str) -> re.Pattern[str]:
    # Not the middle of a longer token.
    return re.compile(rf"(?<![\w\-]){pattern}(?![\w\-])")


SECRET_PATTERNS: list[SecretPattern] = [
    SecretPattern("anthropic", ("sk-ant-",), _tail(r"sk-ant-[A-Za-z0-9_\-]{20,}")),
    SecretPattern("openai", ("sk-",), _tail(r"sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{20,}")),
    SecretPattern("aws_access_key", ("AKIA", "ASIA"), _tail(r"A(?:KI|SI)A[0-9A-Z]{16}")),
    SecretPattern(
        "github", ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"),
        _tail(r"(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_\w{22,255})"),
    ),
    SecretPattern("slack", ("xox",), _tail(r"xox[abposr]-[A-Za-z0-9\-]{10,}")),
    SecretPattern(
        "slack_webhook", ("hooks.slack.com",),
        re.compile(r"https://hooks\.slack\.com/services/T\w+/B\w+/\w+"),
    ),
    SecretPattern(
        "stripe", ("sk_live_", "sk_test_", "rk_live_", "rk_test_"),
        _tail(r"[sr]k_(?:live|test)_[A-Za-z0-9]{16,}"),
    ),
    SecretPattern("google_api_key", ("AIza",), _tail(r"AIza[0-9A-Za-z_\-]{35}")),
    # This portal's own API keys (a placeholder prefix until the key issuer's lands).
    SecretPattern("portal_api_key", ("aip_",), _tail(r"aip_[A-Za-z0-9_\-]{20,}")),
    SecretPattern(
        "private_key", ("PRIVATE KEY",),
        # A whole block, or a pasted block cut before its END line.
        re.compile(
            r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----"
            r"(?:[\s\S]*?-----END [A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----|[A-Za-z0-9+/=\s:\-,]*)"
        ),
    ),
    SecretPattern(
        "jwt", ("eyJ",),
        _tail(r"eyJ[A-Za-z0-9_\-]{5,}\.eyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]{10,}"),
        _jwt_header,
    ),
]


# Every hint once: one substring test each per text (in C), and most texts stop there.
# Those with an `_` (GitHub's, Stripe's, the portal's own) are looked for only around the
# text's underscores, which prose and finance text rarely have (a file name, an address).
_HINTS = tuple(dict.fromkeys(hint for secret in SECRET_PATTERNS for hint in secret.hints))
_PLAIN_HINTS = tuple(hint for hint in _HINTS if "_" not in hint)
_UNDERSCORE_HINTS = tuple(hint for hint in _HINTS if "_" in hint)
# How far such a hint reaches before its first `_`, and from it on.
_BEFORE_UNDERSCORE = max(hint.index("_") for hint in _UNDERSCORE_HINTS)
_FROM_UNDERSCORE = max(len(hint) - hint.index("_") for hint in _UNDERSCORE_HINTS)
_FEW_UNDERSCORES = 8  # past this many (code, identifiers), the whole text is searched


def _around_underscores(text: str) -> str:
    """What surrounds each `_` of `text`, as far as a hint with one can reach, joined by
    NULs; or `text` itself when it has many. A hint is in the one exactly when it is in
    the other: every occurrence lies around its first `_`, and none can span a NUL."""
    pieces: list[str] = []
    at = text.find("_")
    while at != -1:
        if len(pieces) == _FEW_UNDERSCORES:
            return text
        pieces.append(text[max(0, at - _BEFORE_UNDERSCORE) : at + _FROM_UNDERSCORE])
        at = text.find("_", at + 1)
    return "\0".join(pieces)


def find_secrets(text: str) -> Iterator[Span]:
    """Every credential of a known format; the key is the credential itself."""
    present = [hint for hint in _PLAIN_HINTS if hint in text]
    if "_" in text:
        around = _around_underscores(text)
        present += [hint for hint in _UNDERSCORE_HINTS if hint in around]
    if not present:
        return
    for secret in SECRET_PATTERNS:
        if not any(hint in present for hint in secret.hints):
            continue
        for match in secret.pattern.finditer(text):
            value = match.group()
            if secret.check is None or secret.check(value):
                yield match.start(), match.end(), value.strip()
