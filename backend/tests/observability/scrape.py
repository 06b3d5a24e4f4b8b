"""Reading /metrics in tests: parse the text format, look samples up by name and labels."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families


@dataclass(frozen=True)
class Samples:
    """Every sample of one scrape."""

    rows: list[tuple[str, dict[str, str], float]]
    families: dict[str, str]  # family name -> type

    def value(self, name: str, **labels: str) -> float:
        """The sum of the samples called `name` whose labels include `labels` (0 if none)."""
        return sum(
            value for sample, have, value in self.rows
            if sample == name and all(have.get(k) == v for k, v in labels.items())
        )

    def labels(self, name: str) -> list[dict[str, str]]:
        """The label sets of every sample called `name`."""
        return [have for sample, have, _ in self.rows if sample == name]

    def names(self) -> set[str]:
        """Every sample name in the scrape (with _total, _bucket, ... suffixes)."""
        return {sample for sample, _, _ in self.rows}


def parse(text: str) -> Samples:
    """Parse a Prometheus text-format body."""
    rows: list[tuple[str, dict[str, str], float]] = []
    families: dict[str, str] = {}
    for family in text_string_to_metric_families(text):
        families[family.name] = family.type
        rows.extend((s.name, dict(s.labels), s.value) for s in family.samples)
    return Samples(rows, families)


async def scrape(client: httpx.AsyncClient, **headers: str) -> Samples:
    """GET /metrics and parse it (the scrape must succeed)."""
    response = await client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)
