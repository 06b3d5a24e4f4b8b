"""Is a finished call an answer? The finish reason decides, the same way for every provider.

Text, whatever the finish reason, is the answer (a refusal's text included, marked by its
`refusal` finish reason; a truncated one by `length`). No text at all is an answer only
when the model simply stopped; a refusal, a block or a budget spent before any text is
an error that says which (see docs/finish-reasons.md).
"""

from __future__ import annotations

from backend.chat.errors import (
    AnswerError,
    ContentFiltered,
    ContentRefused,
    OutputBudgetExhausted,
)
from backend.providers.base import FinishReason, Usage


def judge(
    *, provider: str, text: str, finish_reason: FinishReason | None, native: str | None,
    usage: Usage | None, max_output_tokens: int | None,
) -> None:
    """Raise the `AnswerError` for a call that ended without any answer text; else nothing."""
    if text or finish_reason in (None, "stop", "tool_calls"):
        return
    said = f" ({native})" if native else ""
    if finish_reason == "refusal":
        raise ContentRefused(
            f"{provider} declined to answer{said} and gave no reason to show",
            provider=provider, finish_reason=finish_reason, provider_reason=native,
        )
    if finish_reason == "content_filter":
        raise ContentFiltered(
            f"{provider}'s safety system blocked this request or its answer{said}",
            provider=provider, finish_reason=finish_reason, provider_reason=native,
        )
    if finish_reason == "length":
        raise OutputBudgetExhausted(
            _budget_message(provider, usage, max_output_tokens),
            provider=provider, provider_reason=native, max_output_tokens=max_output_tokens,
        )
    raise AnswerError(
        f"{provider} ended the answer with an error{said} before any text",
        provider=provider, finish_reason=finish_reason, provider_reason=native,
    )


def _budget_message(provider: str, usage: Usage | None, max_output_tokens: int | None) -> str:
    budget = f"max_output_tokens ({max_output_tokens})" if max_output_tokens else "output limit"
    spent = ""
    if usage is not None and usage.reasoning_tokens:
        spent = f", {usage.reasoning_tokens} of {usage.output_tokens} output tokens on reasoning"
    return (
        f"{provider} used the specialist's whole {budget} before writing any answer{spent}; "
        "raise the specialist's max_output_tokens"
    )
