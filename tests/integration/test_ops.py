"""The monitoring that ships in the package (packaging/prometheus, packaging/grafana) asks
only for metrics this redeemd exports: a renamed metric would leave an alert that can never
fire. (tests/ops/run checks the files themselves with promtool.)"""
import os
import re

import requests

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
FILES = ["packaging/prometheus/redeemd.rules.yml", "packaging/grafana/redeemd.json"]


def test_every_metric_the_alerts_and_dashboard_use_is_exported(stack):
    redis, d, api, db = stack
    api.create(code="OPS-1")
    assert api.redeem("OPS-1").status_code == 201  # the histograms have a route
    text = requests.get(f"{d.url}/metrics", timeout=10).text
    exported = set()
    for line in text.splitlines():
        m = re.match(r"# TYPE (\w+) (\w+)", line)
        if m:
            exported.add(m.group(1))
            if m.group(2) == "histogram":
                exported |= {m.group(1) + s for s in ("_bucket", "_sum", "_count")}
    assert "redeemd_outbox_backlog" in exported
    for f in FILES:
        used = set(re.findall(r"\b((?:redeemd|process)_[a-z_]+)\b",
                              open(os.path.join(ROOT, f)).read()))
        assert used, f
        assert used <= exported, (f, sorted(used - exported))
