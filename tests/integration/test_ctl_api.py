"""redeemctl's back-office commands (create, list, export, stats) go through the HTTP API."""
import csv
import io
import json
import subprocess
import uuid

from conftest import REDEEMCTL
from test_ledger import drained


def run(d, key, *args, stdin=None):
    return subprocess.run([REDEEMCTL, f"--port={d.port}", args[0], "--key", key, *args[1:]],
                          capture_output=True, text=True, timeout=60, input=stdin)


def test_create_list_export_stats(stack):
    redis, d, api, db = stack
    p = "C" + uuid.uuid4().hex[:6].upper()
    out = run(d, api.key, "create", json.dumps({"code": f"{p}-1", "campaign": "cli, one",
                                                "discount": {"type": "percent", "value": 500}}))
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["code"] == f"{p}-1"
    body = json.dumps({"code": f"{p}-2", "kind": "voucher", "balance": 700, "currency": "EUR"})
    assert run(d, api.key, "create", "-", stdin=body).returncode == 0
    for i in range(3, 1206):  # more than one page of 1000
        api_ok = api.post("/v1/coupons", {"code": f"{p}-{i}",
                                          "discount": {"type": "percent", "value": 100}})
        assert api_ok.status_code == 201
    err = run(d, api.key, "create", json.dumps({"code": f"{p}-1", "discount": {
        "type": "percent", "value": 500}}))
    assert err.returncode == 1 and "coupon_exists" in err.stderr
    drained(d)

    out = run(d, api.key, "list", f"prefix={p}")
    assert out.returncode == 0, out.stderr
    lines = [json.loads(x) for x in out.stdout.splitlines()]
    assert len(lines) == 1205 and len({x["code"] for x in lines}) == 1205
    out = run(d, api.key, "list", f"prefix={p}", "kind=voucher")
    assert [json.loads(x)["balance"] for x in out.stdout.splitlines()] == [700]
    out = run(d, api.key, "export", f"prefix={p}", "campaign=cli, one")
    table = list(csv.reader(io.StringIO(out.stdout)))
    assert table[0][0] == "code" and len(table) == 2 and table[1][3] == "cli, one"
    out = run(d, api.key, "stats")
    assert out.returncode == 0 and json.loads(out.stdout)["coupons"]["total"] >= 1205
    bad = run(d, api.key, "list", "status=gone")
    assert bad.returncode == 1 and "invalid_request" in bad.stderr and "status" in bad.stderr
    assert run(d, api.key, "list", "nonsense").returncode == 2


def test_key_and_reachability(stack):
    redis, d, api, db = stack
    p = subprocess.run([REDEEMCTL, f"--port={d.port}", "stats"], capture_output=True, text=True,
                       timeout=30, env={"PATH": "/usr/bin:/bin"})
    assert p.returncode == 2 and "API key" in p.stderr
    p = subprocess.run([REDEEMCTL, "stats", "--url", "http://127.0.0.1:1", "--key", "x"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 1 and "cannot connect" in p.stderr
    p = run(d, "rdk_nope_nope", "stats")
    assert p.returncode == 1 and "unauthorized" in p.stderr
