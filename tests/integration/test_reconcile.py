"""redeemctl reconcile: Redis counters against the ledger (PostgreSQL plus unshipped
entries); --repair rebuilds Redis from the ledger. The clock is injected (--now)."""
import subprocess

import pytest

from conftest import REDEEMCTL, key_loaded, make_key, redis_flags, wait_for
from test_ledger import drained

NOW = "2030-05-15T12:00:00Z"  # a Wednesday


def reconcile(redis, db, *args):
    p = subprocess.run([REDEEMCTL] + redis_flags(redis.port) + [f"--pg_conninfo={db}",
                        "reconcile", "--now", NOW] + list(args),
                       capture_output=True, text=True, timeout=120)
    return p.returncode, p.stdout


def traffic(api):
    c = api.create(limits={"per_user": 3, "per_user_daily": 2, "total": 100})
    ids = [api.redeem(c["code"], user=f"u{i % 3}", now=NOW).json()["id"] for i in range(5)]
    # earlier this week, a user with no uses yet: counts in the week, not today
    assert api.redeem(c["code"], user="u5", now="2030-05-13T09:00:00Z").status_code == 201
    api.post(f"/v1/redemptions/{ids[0]}/reverse", headers={"X-Redeemd-Now": NOW})
    assert api.redeem(c["code"], user="u1", now=NOW).status_code == 422  # daily limit
    return c["code"]


def test_clean_then_planted_difference(stack):
    redis, d, api, fresh_db = stack
    code = traffic(api)
    drained(d)
    rc, out = reconcile(redis, fresh_db)
    assert rc == 0 and "no differences" in out, out
    r = redis.client()
    ckey = next(r.scan_iter(match=f"*:c:{code}"))
    ukey = ckey.replace(":c:", ":u:")
    r.hset(ckey, "used", 42)
    counts = r.hget(ukey, "u:u2").split(":")  # total:day:uses:week:uses
    r.hset(ukey, "u:u2", ":".join(["9"] + counts[1:]))
    rc, out = reconcile(redis, fresh_db)
    assert rc == 1
    assert f"coupon {code}: used redis=42 ledger=5" in out
    assert f"coupon {code} user u2: total redis=9 ledger=1" in out
    rc, out = reconcile(redis, fresh_db, "--repair")
    assert rc == 0 and "2 differences repaired" in out
    assert reconcile(redis, fresh_db)[0] == 0
    assert r.hget(ckey, "used") == "5"


@pytest.mark.daemon_args("--pg_conninfo=host=127.0.0.1 port=1 dbname=x", no_wait=True)
def test_unshipped_entries_count(stack):
    redis, d, api, fresh_db = stack
    traffic(api)  # nothing reaches PostgreSQL: it all waits in the streams
    r = redis.client()
    assert sum(r.xlen(k) for k in r.scan_iter(match="{*}:log")) >= 8
    rc, out = reconcile(redis, fresh_db)
    assert rc == 0, out
    r.hset(next(r.scan_iter(match="*:c:*")), "used", 0)
    rc, out = reconcile(redis, fresh_db)
    assert rc == 1 and "used redis=0 ledger=5" in out


def test_repair_after_redis_data_loss(stack):
    redis, d, api, fresh_db = stack
    code = traffic(api)
    drained(d)
    r = redis.client()
    r.flushall()
    rc, out = reconcile(redis, fresh_db)
    assert rc == 1 and f"coupon {code}: missing in Redis" in out
    rc, out = reconcile(redis, fresh_db, "--repair")
    assert rc == 0, out
    assert reconcile(redis, fresh_db)[0] == 0
    # the restored coupon enforces what was used before the loss
    api.key = make_key(redis.port, "admin,redeem")
    wait_for(lambda: key_loaded(api.base, api.key, f"/v1/coupons/{code}", (200,)),
             what="key reloaded")
    got = api.get(f"/v1/coupons/{code}").json()
    assert got["used"]["total"] == 5 and got["limits"]["per_user_daily"] == 2
    r1 = api.redeem(code, user="u1", now=NOW)  # u1 used 2 today before the loss
    assert r1.status_code == 422 and r1.json()["error"]["code"] == "limit_user_daily_reached"
    assert api.redeem(code, user="u9", now=NOW).status_code == 201


def test_voucher_payments_count_as_uses_until_refunded_in_full(stack):
    redis, d, api, fresh_db = stack
    import uuid
    v = api.post("/v1/coupons", {"kind": "voucher", "balance": 1000, "currency": "EUR",
                                 "limits": {"per_user": 5}}).json()
    code = v["code"]

    def pay(user):
        r = api.post(f"/v1/vouchers/{code}/pay", {"amount": 100, "currency": "EUR",
                                                 "user_id": user},
                     headers={"Idempotency-Key": uuid.uuid4().hex, "X-Redeemd-Now": NOW})
        assert r.status_code == 201, r.text
        return r.json()["id"]
    a, b, _ = pay("x"), pay("x"), pay("y")
    for pid, body in ((a, None), (b, {"amount": 40})):  # a in full, b in part
        r = api.post(f"/v1/redemptions/{pid}/reverse", body,
                     headers={"Idempotency-Key": uuid.uuid4().hex, "X-Redeemd-Now": NOW})
        assert r.status_code == 200, r.text
    drained(d)
    rc, out = reconcile(redis, fresh_db)
    assert rc == 0 and "no differences" in out, out
    r = redis.client()
    ckey = next(r.scan_iter(match=f"*:c:{code}"))
    assert r.hget(ckey, "used") == "2"
    # money: a planted balance difference is found and repaired from the ledger
    r.hset(ckey, "bal", 999999)
    rc, out = reconcile(redis, fresh_db)
    assert rc == 1 and f"voucher {code}: bal redis=999999 ledger=840" in out, out
    assert reconcile(redis, fresh_db, "--repair")[0] == 0
    assert r.hget(ckey, "bal") == "840"
    # and after Redis lost everything, the voucher comes back with its money
    r.flushall()
    rc, out = reconcile(redis, fresh_db, "--repair")
    assert rc == 0, out
    assert r.hmget(ckey, "bal", "loaded", "spent", "refunded") == ["840", "1000", "300", "140"]
    assert r.hget(ckey, "used") == "2"
