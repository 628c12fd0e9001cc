"""The monitoring that ships in the package (packaging/prometheus, packaging/grafana) asks
only for metrics this redeemd exports: a renamed metric would leave an alert that can never
fire. (tests/ops/run checks the files themselves with promtool.)"""
import os
import re
import subprocess

import requests

from conftest import REDEEMCTL, redis_flags

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


def test_rewrite_aof_compacts_every_primary_one_at_a_time(stack):
    """redeemctl rewrite-aof (the packaged timer runs it at a quiet hour, with Redis' own
    rewrites off): each primary's append-only file is rewritten and waited for before the
    next one starts, so two rewrites never share a disk."""
    redis, d, api, db = stack
    api.create(code="OPS-2")
    primaries = [p for p in redis.ports
                 if redis.node(p).info("replication")["role"] == "master"]
    before = {p: redis.node(p).info("persistence")["aof_rewrites"] for p in primaries}
    p = subprocess.run([REDEEMCTL] + redis_flags(redis.port) + ["rewrite-aof"],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert p.stdout.count("append-only file rewritten") == len(primaries), p.stdout
    for port in primaries:
        info = redis.node(port).info("persistence")
        assert info["aof_rewrites"] == before[port] + 1
        assert info["aof_last_bgrewrite_status"] == "ok"
    assert api.get("/v1/coupons/OPS-2").status_code == 200
    bad = subprocess.run([REDEEMCTL] + redis_flags(redis.port) + ["rewrite-aof", "--now"],
                         capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and "rewrite-aof [--timeout SECONDS]" in bad.stderr
