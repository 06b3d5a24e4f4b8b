"""What a lower package calls to have its change audited in the same transaction.

Budgets and API keys change rows that the audit chain (backend/governance/audit.py) must
record, and the entry must commit or roll back with the change. Those packages sit below
governance, so they take this callable instead of importing it: the route that knows who
asked and which request it is builds one with `governance.audit.audited(...)`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

# (the caller's open transaction, the state before, the state after) -> entry written
AuditHook = Callable[
    [AsyncConnection, Mapping[str, Any] | None, Mapping[str, Any] | None], Awaitable[object]
]
