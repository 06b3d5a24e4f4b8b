"""Answers that came back but are not answers: refused, blocked, or spent on reasoning.

The provider call itself succeeded (and was billed), so these are raised by the chat
service after judging the finish reason, never by a provider module, and never retried:
the same request would end the same way. `api/errors.py` gives them their statuses.
"""

from __future__ import annotations

from backend.providers.errors import ProviderError


class AnswerError(ProviderError):
    """A finished call with no usable text; `finish_reason` and `provider_reason` say why."""

    code = "empty_answer"

    def __init__(
        self, message: str, *, provider: str, finish_reason: str, provider_reason: str | None
    ) -> None:
        super().__init__(message, provider=provider)
        self.finish_reason = finish_reason
        self.provider_reason = provider_reason

    def body(self) -> dict[str, object]:
        """The error body, with the normalised and the provider's own reason."""
        return {
            **super().body(),
            "finish_reason": self.finish_reason,
            "provider_reason": self.provider_reason,
        }


class ContentRefused(AnswerError):
    """The model declined to answer and gave no text to show for it."""

    code = "content_refused"


class ContentFiltered(AnswerError):
    """A safety system blocked the prompt or the answer (no text came through)."""

    code = "content_filtered"


class OutputBudgetExhausted(AnswerError):
    """The whole output budget went to reasoning (or ran out) before any answer text."""

    code = "output_budget_exhausted"

    def __init__(
        self, message: str, *, provider: str, provider_reason: str | None,
        max_output_tokens: int | None,
    ) -> None:
        super().__init__(
            message, provider=provider, finish_reason="length", provider_reason=provider_reason
        )
        self.max_output_tokens = max_output_tokens

    def body(self) -> dict[str, object]:
        """The error body, naming the specialist's budget."""
        return {**super().body(), "max_output_tokens": self.max_output_tokens}
