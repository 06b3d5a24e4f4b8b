"""The shipped specialists on models that reason silently keep room to answer.

Such a model spends its output budget on reasoning before the first word of the answer; with
too small a `max_output_tokens` the answer is empty (`output_budget_exhausted`) and every
token is billed all the same. Which models those are is each provider's own call
(`Provider.thinks_silently`), so a new reasoning model is caught here as soon as its provider
knows it.
"""

from __future__ import annotations

from pathlib import Path

import aiohttp

from backend.config.settings import DEFAULT_SPECIALISTS_FILE
from backend.providers.factory import ProviderFactory
from backend.specialists.manager import SpecialistManager
from backend.tests.support import make_settings

# OpenAI advises reserving 25,000 tokens for reasoning and answer; Gemini 2.5's dynamic
# thinking budget alone can take 8,192. Below this, answers come back empty.
MIN_REASONING_BUDGET = 16_384


async def test_every_silently_reasoning_specialist_has_a_large_output_budget(
    tmp_path: Path,
) -> None:
    settings = make_settings(
        tmp_path, openai_api_key="unused", anthropic_api_key="unused", google_api_key="unused"
    )
    specialists = SpecialistManager.from_file(DEFAULT_SPECIALISTS_FILE).all()
    async with aiohttp.ClientSession() as session:  # never used: nothing is called
        factory = ProviderFactory(settings, session, environ={})
        reasoning = [
            s for s in specialists if factory.get(s.target).thinks_silently(s.model)
        ]
    # The file ships an o-series and a Gemini 2.5 specialist: the check is not vacuous.
    assert {s.model for s in reasoning} >= {"o4-mini", "gemini-2.5-flash"}
    for specialist in reasoning:  # disabled ones too: enabling one must not break it
        budget = specialist.max_output_tokens
        assert budget is not None and budget >= MIN_REASONING_BUDGET, (
            f"{specialist.name} ({specialist.model}) has max_output_tokens={budget}"
        )
