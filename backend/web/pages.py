"""The two HTML pages, rendered once from their templates with the asset version and limits."""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path

from backend.config.settings import Settings
from backend.web.assets import Asset, AssetBundle

TEMPLATES = Path(__file__).parent / "templates"
_HTML = "text/html; charset=utf-8"


@dataclass(frozen=True, slots=True)
class WebPages:
    """The rendered chat and dashboard pages, and the assets they load."""

    chat: Asset
    usage: Asset
    assets: AssetBundle

    @classmethod
    def build(cls, settings: Settings, assets: AssetBundle | None = None) -> WebPages:
        """Render both pages for these settings (called once, by create_app)."""
        assets = assets or AssetBundle.load()
        values = {
            "assets": assets.base,
            # The seed's conversation limits, so the page warns before the server refuses.
            "max_message_chars": str(settings.max_message_chars),
            "max_history_messages": str(settings.max_history_messages),
            "max_total_chars": str(settings.max_total_chars),
        }
        return cls(
            chat=Asset.of(_render("chat.html", values), _HTML),
            usage=Asset.of(_render("usage.html", values), _HTML),
            assets=assets,
        )


def _render(name: str, values: dict[str, str]) -> bytes:
    text = (TEMPLATES / name).read_text()
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", html.escape(value))
    if "{{" in text:
        raise ValueError(f"template {name} has a placeholder nobody fills")
    return text.encode()
