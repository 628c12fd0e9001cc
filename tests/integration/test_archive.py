"""redeemctl archive: dead codes leave Redis (memory back), PostgreSQL keeps them; archived
codes answer coupon_not_found on redeem and stay readable, listed and counted."""
import uuid

from conftest import ctl
from test_ledger import drained

NOW = "2030-02-01T00:00:00Z"


def archive(redis, db, *args):
    return ctl(redis.port, f"--pg_conninfo={db}", "archive", "--now", NOW, *args).stdout


def test_archive_expired_exhausted_disabled(stack):
    redis, d, api, db = stack
    api.now = "2029-11-01T00:00:00Z"  # the clock of this test: every date below is after it
    p = "A" + uuid.uuid4().hex[:6].upper()
    exp = api.create(code=f"{p}-EXP", expires_at="2030-01-01T00:00:00Z", campaign="old")
    later = api.create(code=f"{p}-LATER", expires_at="2030-01-20T00:00:00Z")
    exh = api.create(code=f"{p}-EXH", limits={"total": 1})
    dis = api.create(code=f"{p}-DIS")
    live = api.create(code=f"{p}-LIVE")
    first = api.redeem(exp["code"], now="2029-12-01T00:00:00Z")
    assert first.status_code == 201
    used = api.redeem(exh["code"]).json()
    assert api.post(f"/v1/coupons/{dis['code']}/disable").status_code == 200
    r = redis.client()
    keys_before = redis.key_count()

    out = archive(redis, db, "--state", "expired", "--prefix", p.lower(), "--dry-run")
    assert "2 of 5 coupons would be archived (expired)" in out, out
    out = archive(redis, db, "--state", "expired", "--prefix", p,
                  "--expired-before", "2030-01-10T00:00:00Z")
    assert "1 of 5 coupons archived (expired)" in out, out
    assert "1 of 4 coupons archived (exhausted)" in archive(redis, db, "--state", "exhausted",
                                                            "--prefix", p)
    assert "1 of 3 coupons archived (disabled)" in archive(redis, db, "--state", "disabled",
                                                           "--prefix", p)
    # coupon hashes and per-user hashes are gone: memory back
    assert redis.key_count() <= keys_before - 5
    assert not list(r.scan_iter(match=f"*:c:{exp['code']}"))
    assert not list(r.scan_iter(match=f"*:u:{exh['code']}"))

    e = api.redeem(exp["code"]).json()["error"]
    assert e["code"] == "coupon_not_found"
    assert api.redeem(live["code"]).status_code == 201
    assert api.get(f"/v1/coupons/{later['code']}").json()["status"] == "active"
    # a reversal of a redemption of an archived code does not bring its hash back
    assert api.post(f"/v1/redemptions/{used['id']}/reverse").status_code == 200
    assert not list(r.scan_iter(match=f"*:c:{exh['code']}"))
    drained(d)

    g = api.get(f"/v1/coupons/{exp['code']}")
    assert g.status_code == 200, g.text
    g = g.json()
    assert g["status"] == "archived" and g["source"] == "ledger" and g["campaign"] == "old"
    assert g["used"]["total"] == 1 and g["archived_at"] == NOW
    assert api.get(f"/v1/coupons/{exh['code']}").json()["used"]["total"] == 0  # reversed
    listed = api.get(f"/v1/coupons?prefix={p}&status=archived")
    assert listed.status_code == 200, listed.text
    listed = listed.json()["data"]
    assert sorted(c["code"] for c in listed) == sorted([exp["code"], exh["code"], dis["code"]])
    s = api.get("/v1/stats", headers={"X-Redeemd-Now": NOW}).json()
    assert s["coupons"]["by_status"]["archived"] == 3
    assert api.get("/v1/coupons/NEVER-WAS-HERE").status_code == 404


def test_archive_arguments(stack):
    redis, d, api, db = stack
    p = ctl(redis.port, "archive", check=False)
    assert p.returncode == 2 and "--state" in p.stderr
    p = ctl(redis.port, "archive", "--state", "active", check=False)
    assert p.returncode == 2
    p = ctl(redis.port, "archive", "--state", "disabled", "--expired-before",
            "2030-01-01T00:00:00Z", check=False)
    assert p.returncode == 2 and "--expired-before" in p.stderr
    p = ctl(redis.port, "archive", "--state", "expired", "--prefix", "A*", check=False)
    assert p.returncode == 2 and "--prefix" in p.stderr
