"""deploy/: the alert rules pass promtool (syntax and their own test cases), the dashboard's
queries are valid PromQL, and every metric either uses is one /metrics really exposes."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from websockets.asyncio.client import connect

from backend.tests.chat.conftest import SPECIALISTS
from backend.tests.observability.conftest import Portal
from backend.tests.support import IN_CI
from backend.tests.transports.conftest import answer, ws_url

ROOT = Path(__file__).resolve().parents[3]
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "alerts.test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "ai-portal.json"
METRIC = re.compile(r"\bportal_[a-z0-9_]+")


def promtool() -> str:
    """The promtool binary (Debian's `prometheus` package); required in CI."""
    path = shutil.which("promtool")
    if path is None:
        if IN_CI:
            pytest.fail("promtool is required in CI (.ci/run installs the prometheus package)")
        pytest.skip("promtool not installed (apt-get install prometheus)")
    return path


def run(*args: str) -> str:
    """Run promtool; fail the test with its output when it refuses."""
    result = subprocess.run(
        [promtool(), *args], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def rule_exprs() -> list[str]:
    """Every expression of the alert rules."""
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule["expr"] for group in groups for rule in group["rules"]]


def dashboard_exprs() -> list[str]:
    """Every query of the dashboard's panels and variables."""
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    exprs += [v["definition"] for v in dashboard["templating"]["list"] if "definition" in v]
    return exprs


def test_the_alert_rules_pass_promtool_check_and_their_tests() -> None:
    assert "SUCCESS: 5 rules found" in run("check", "rules", str(RULES))
    assert "SUCCESS" in run("test", "rules", str(RULE_TESTS))


def test_the_dashboards_queries_are_valid_promql(tmp_path: Path) -> None:
    # Grafana's variables replaced by what they stand for; label_values() is Grafana's own.
    queries = [
        q.replace("$__rate_interval", "5m").replace("$specialist", ".*")
        for q in dashboard_exprs() if not q.startswith("label_values(")
    ]
    assert len(queries) >= 15
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{n}", "expr": q} for n, q in enumerate(queries)
    ]}]}
    as_rules = tmp_path / "dashboard-rules.yml"
    as_rules.write_text(yaml.safe_dump(rules))
    assert f"SUCCESS: {len(queries)} rules found" in run("check", "rules", str(as_rules))


def exposed(text: str) -> set[str]:
    """Every series name /metrics can produce: samples, and each family's typed names."""
    names: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            names.add(name)
            if kind == "histogram":
                names.update(f"{name}_{suffix}" for suffix in ("bucket", "sum", "count"))
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


async def test_every_metric_the_dashboard_and_rules_use_is_exposed(portal: Portal) -> None:
    body = {"specialist_id": SPECIALISTS["openai"], "message": "hi"}
    assert (await portal.client.post("/chat/send", json=body)).status_code == 200
    async with connect(ws_url(portal)) as ws:
        await ws.send(orjson.dumps(body).decode())
        await answer(ws)
    text = (await portal.client.get("/metrics")).text
    names = exposed(text)
    used = {m for expr in rule_exprs() + dashboard_exprs() for m in METRIC.findall(expr)}
    assert len(used) >= 14
    assert used <= names, sorted(used - names)
    # And the dashboard covers every family the portal exposes.
    families = {n for n in names if n.startswith("portal_")}
    unused = {
        n for n in families
        if not any(n == u or n.startswith(u.removesuffix("_bucket")) for u in used)
    }
    assert not unused, sorted(unused)
