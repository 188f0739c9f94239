"""The monitoring files in deploy/ stay true to the metrics LockN exports: every metric the Grafana dashboard
queries is one `backend/core/metrics.py` defines (or the queue-depth gauge made at scrape time)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from backend.core import metrics

DEPLOY = Path(__file__).resolve().parent.parent / "deploy" / "monitoring"


def test_the_dashboard_queries_only_metrics_that_exist() -> None:
    exported = {"lockn_queue_depth"}
    for value in vars(metrics).values():
        name = getattr(value, "_name", None)
        if isinstance(name, str) and name.startswith("lockn_"):
            kind = type(value).__name__
            exported |= {f"{name}_total"} if kind == "Counter" else {f"{name}_bucket", f"{name}_count", f"{name}_sum"}
    dashboard = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    queried = {name for panel in dashboard["panels"] for target in panel["targets"]
               for name in re.findall(r"\blockn_[a-z_]+", target["expr"])}
    assert queried and queried <= exported, queried - exported


def test_the_scrape_config_is_valid_yaml_with_both_jobs() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    assert {job["job_name"] for job in config["scrape_configs"]} == {"lockn-web", "lockn-workers"}
