"""The support alerts and dashboard row name only series the worker's ticket metrics expose,
and the files stay loadable (Prometheus reads the YAML, Grafana the JSON)."""

import json
import re
from pathlib import Path

import yaml
from prometheus_client import CollectorRegistry

from adapters.prometheus_ticket_metrics import PrometheusTicketMetrics

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
TICKET_SERIES = re.compile(r"\bkabinet_tickets?_[a-z_]+")


def exposed() -> set[str]:
    registry = CollectorRegistry()
    PrometheusTicketMetrics(registry)
    return {sample.name for metric in registry.collect() for sample in metric.samples}


def test_support_alerts_use_exposed_series() -> None:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    [support] = [group for group in rules["groups"] if group["name"] == "kabinet-support"]
    named = {series for rule in support["rules"] for series in TICKET_SERIES.findall(rule["expr"])}
    assert {rule["alert"] for rule in support["rules"]} >= {
        "KabinetTicketSlaBreaches",
        "KabinetTicketQueueAge",
    }
    assert named
    assert named <= exposed(), named - exposed()


def test_the_dashboards_support_row_uses_exposed_series() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "kabinet.json").read_text())
    panels = dashboard["panels"]
    assert len({panel["id"] for panel in panels}) == len(panels)
    titles = [panel["title"] for panel in panels if panel["type"] == "row"]
    assert "Support tickets" in titles
    named = {
        series
        for panel in panels
        for target in panel.get("targets", ())
        for series in TICKET_SERIES.findall(target["expr"])
    }
    assert named
    assert named <= exposed(), named - exposed()
