"""The operators' monitoring files: deploy/prometheus/alerts.yml (and its promtool unit
tests), deploy/prometheus/prometheus.yml and deploy/grafana/premium-support.json.

promtool checks the rules' syntax and runs alerts.test.yml; every PromQL expression of
the rules and the dashboard may only name a metric that the services export (read from
the /metrics exposition of the three services as `bootstrap` builds them), one of the
RabbitMQ metrics in deploy/prometheus/rabbitmq-metrics.txt, or Prometheus's own `up`.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from services.intake.main import IntakeSettings
from services.intake.main import bootstrap as intake_bootstrap
from services.notifier.main import NotifierSettings
from services.notifier.main import bootstrap as notifier_bootstrap
from services.notifier.worker import NotifierWorker
from services.runtime.metrics import RuntimeMetrics
from services.sla_timer.main import SlaSettings
from services.sla_timer.main import bootstrap as sla_bootstrap
from tests.conftest import ROOT
from tests.monitoring.conftest import run_promtool

PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
RULES = PROMETHEUS_DIR / "alerts.yml"
RULE_TESTS = PROMETHEUS_DIR / "alerts.test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "premium-support.json"
RABBITMQ_METRICS = PROMETHEUS_DIR / "rabbitmq-metrics.txt"
OPERATIONS = ROOT / "docs" / "operations.md"
PROMETHEUS_OWN = {"up"}  # set by Prometheus for every scrape target
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
}
# Grafana's variables, replaced by values Prometheus accepts, for promtool's syntax check.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "${prefix:regex}": "", "$job": ".*", "$vhost": ".*"}


def rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def dashboard_exprs() -> list[str]:
    return [t["expr"] for p in dashboard()["panels"] for t in p.get("targets", [])]


def rabbitmq_metrics() -> set[str]:
    lines = RABBITMQ_METRICS.read_text().splitlines()
    return {line.strip() for line in lines if line.strip() and not line.startswith("#")}


# --- metric names in PromQL ----------------------------------------------------------

_NOT_METRICS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: identifiers left once strings,
    label matchers, ranges and `by (...)`-style label lists are removed, that are not
    called (functions, aggregations) and not operators."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        before = text[match.start() - 1] if match.start() else " "
        called = text[match.end() :].lstrip().startswith("(")
        if before.isdigit() or before == "." or called or match.group().lower() in _NOT_METRICS:
            continue  # part of a number (1e3), a function, or an operator
        names.add(match.group())
    return names


def test_metric_names_are_read_from_promql() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (job, le) (rate(x_seconds_bucket{queue=~"a.b"}[5m])))'
        ' > 1e3 and on (job) y_total unless max without (q) (z{a="by (w)"} offset 5m) > bool 2'
    )
    assert metric_names(expr) == {"x_seconds_bucket", "y_total", "z"}


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """Every sample name the three services serve on /metrics: the runtime's registry
    and each service's own, as `bootstrap` builds them, rendered and parsed as a scrape
    would; the notifier after its first coverage check (its gauges appear then)."""
    tmp = tmp_path_factory.mktemp("metrics")
    registries: list[CollectorRegistry] = [RuntimeMetrics.create().registry]
    intake = intake_bootstrap(IntakeSettings(ACCOUNTS_FILE=ROOT / "examples" / "accounts.yaml"))
    sla = sla_bootstrap(SlaSettings(SLA_STORE_URL=str(tmp / "sla.db")))
    # deploy/oncall.yaml covers level 1 all week (tests/unit/test_deploy_files.py), so the
    # coverage check posts nothing to a team channel.
    notifier = notifier_bootstrap(
        NotifierSettings(
            ONCALL_FILE=ROOT / "deploy" / "oncall.yaml", NOTIFIER_STORE_URL=str(tmp / "n.db")
        )
    )
    worker = next(w.__self__ for w in notifier.workers if hasattr(w, "__self__"))
    assert isinstance(worker, NotifierWorker)
    worker.check_coverage(datetime.now(UTC))
    for spec in (intake, sla, notifier):
        if spec.metrics is not None:
            registries.append(spec.metrics)
    names = set()
    for registry in registries:
        for family in text_string_to_metric_families(generate_latest(registry).decode()):
            names |= {family.name + s for s in SUFFIXES.get(family.type, ("",))}
    return names


def test_the_metrics_docs_operations_names_are_exported(exported: set[str]) -> None:
    pattern = r"`((?:messages|handler|sla|notifications?|oncall)_[a-z_]+)[`{]"
    named = re.findall(pattern, OPERATIONS.read_text())
    assert "oncall_coverage_next_gap_start_timestamp_seconds" in named
    for name in named:
        assert name in exported or f"{name}_bucket" in exported, name


@pytest.mark.parametrize("source", ["rules", "dashboard"])
def test_every_metric_used_exists(exported: set[str], source: str) -> None:
    exprs = [r["expr"] for r in rules()] if source == "rules" else dashboard_exprs()
    known = exported | rabbitmq_metrics() | PROMETHEUS_OWN
    used = {name for expr in exprs for name in metric_names(expr)}
    assert used, source
    assert used - known == set(), f"{source} names metrics nobody exports"


def test_the_rabbitmq_list_is_all_used() -> None:
    used = {n for e in [r["expr"] for r in rules()] + dashboard_exprs() for n in metric_names(e)}
    assert rabbitmq_metrics() <= used, "deploy/prometheus/rabbitmq-metrics.txt lists an unused one"


# --- the rules --------------------------------------------------------------------------


def anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    headings = re.findall(r"^#+\s+(.+?)\s*$", markdown, flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


def test_every_rule_has_for_severity_and_a_runbook_section() -> None:
    found = anchors(OPERATIONS.read_text())
    names = [r["alert"] for r in rules()]
    assert len(names) == len(set(names))
    for rule in rules():
        name = rule["alert"]
        assert re.fullmatch(r"\d+[smh]", str(rule["for"])), name
        assert rule["labels"]["severity"] in {"critical", "warning"}, name
        notes = rule["annotations"]
        assert notes["summary"].strip() and notes["description"].strip(), name
        path, _, anchor = notes["runbook"].partition("#")
        assert path == "docs/operations.md" and anchor in found, name


def test_the_issue_s_alerts_are_there() -> None:
    exprs = {r["alert"]: r["expr"] for r in rules()}
    watched = {
        "page backlog": "notifier\\\\.urgent",
        "dead letters": "\\\\.dead",
        "late SLA firing": "sla_fire_lateness_seconds_bucket",
        "no consumer": "rabbitmq_queue_consumers",
        "coverage gap": "oncall_coverage_next_gap_start_timestamp_seconds",
    }
    for what, needle in watched.items():
        assert any(needle in e for e in exprs.values()), what


def test_promtool_checks_the_rules(promtool: Path) -> None:
    output = run_promtool(promtool, "check", "rules", RULES)
    assert f"SUCCESS: {len(rules())} rules found" in output


def test_promtool_unit_tests_fire_every_alert(promtool: Path) -> None:
    cases = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    fired = {
        check["alertname"]
        for case in cases
        for check in case.get("alert_rule_test", [])
        if check.get("exp_alerts")
    }
    assert fired == {r["alert"] for r in rules()}, "each alert needs a case where it fires"
    output = run_promtool(promtool, "test", "rules", RULE_TESTS.name, cwd=PROMETHEUS_DIR)
    assert "SUCCESS" in output


def test_promtool_checks_the_example_configuration(promtool: Path) -> None:
    output = run_promtool(promtool, "check", "config", PROMETHEUS_DIR / "prometheus.yml")
    assert "SUCCESS" in output


# --- the dashboard --------------------------------------------------------------------


def test_the_dashboard_is_well_formed() -> None:
    dash = dashboard()
    assert dash["uid"] and dash["title"] and isinstance(dash["schemaVersion"], int)
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    panels = dash["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    graphs = [p for p in panels if p["type"] != "row"]
    assert len(graphs) >= 10
    for panel in graphs:
        title = panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, title
        assert panel["targets"], title
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), title
        for target in panel["targets"]:
            assert target["expr"].strip(), title
            assert target.get("datasource", panel["datasource"]) == panel["datasource"], title
        pos = panel["gridPos"]
        assert pos["w"] > 0 and pos["h"] > 0 and pos["x"] + pos["w"] <= 24, title
    # No data source of one installation is baked in.
    assert '"uid": "${datasource}"' in DASHBOARD.read_text()
    uids = re.findall(r'"uid":\s*"([^"]*)"', DASHBOARD.read_text())
    assert set(uids) == {"${datasource}", dash["uid"]}


def test_the_dashboard_queries_parse(promtool: Path, tmp_path: Path) -> None:
    """promtool has no query checker: each query becomes a recording rule."""
    records = []
    for n, expr in enumerate(dashboard_exprs()):
        for variable, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(variable, value)
        assert "$" not in expr, expr
        records.append({"record": f"dashboard:query_{n}", "expr": expr})
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": records}]}))
    output = run_promtool(promtool, "check", "rules", path)
    assert f"SUCCESS: {len(records)} rules found" in output
