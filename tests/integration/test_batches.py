"""Batches (POST /v1/batches): codes issued in bulk by the batch thread, unique (also against
existing and archived codes), redeemable, sharing one template in Redis; progress, cancel,
the codes CSV, crash and restart, redeemctl batch. Redemptions keep working meanwhile."""
import csv
import io
import random
import re
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import psycopg2
import pytest

from conftest import REDEEMCTL, Api, Daemon, migrate, start_load, wait_for
from test_archive import archive
from test_ledger import drained, rows
from test_reconcile import reconcile

NOW = "2030-05-15T12:00:00Z"
DISCOUNT = {"discount": {"type": "percent", "value": 1000}, "limits": {"total": 1}}


def batch(api, count, fmt=None, template=None, **kw):
    body = {"count": count, "template": template or dict(DISCOUNT)}
    if fmt is not None:
        body["format"] = fmt
    return api.post("/v1/batches", body, **kw)


def finished(api, bid, timeout=180):
    """Polls until the job ends; progress never goes back."""
    seen = [0]

    def ended():
        v = api.get(f"/v1/batches/{bid}").json()
        assert v["created"] >= seen[0], v
        seen[0] = v["created"]
        return v if v["state"] not in ("queued", "running") else None
    wait_for(ended, timeout=timeout, step=0.2, what=f"batch {bid} to end")
    return api.get(f"/v1/batches/{bid}").json()


def codes_of(api, bid):
    r = api.get(f"/v1/batches/{bid}/codes")
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/csv"), r.text
    lines = list(csv.reader(io.StringIO(r.text)))
    assert lines[0] == ["code"]
    return [line[0] for line in lines[1:]]


def in_redis(redis, codes, bid):
    """How many of codes Redis holds as codes of batch bid (hash field t)."""
    r = redis.client()
    keys = {}
    for k in r.scan_iter(match="*:c:*", count=10000):
        keys[k.split(":c:", 1)[1]] = k
    p = r.pipeline(transaction=False)
    for c in codes:
        p.hget(keys.get(c, "{x}:c:none"), "t")
    return sum(1 for t in p.execute() if t == bid)


def test_batch_of_100k_unique_redeemable_while_redeeming(stack):
    redis, d, api, db = stack
    hot = api.create(limits={"total": 1000000})
    stop, results, lock, threads = start_load(d, api.key, hot["code"], 6, "load")
    try:
        r = batch(api, 100000, {"prefix": "V-", "length": 10, "check": True},
                  dict(DISCOUNT, campaign="spring", tags=["VIP"], expires_in_days=30),
                  headers={"X-Redeemd-Now": NOW})
        assert r.status_code == 202, r.text
        v = r.json()
        assert v["state"] == "queued" and v["requested"] == 100000 and v["created"] == 0
        bid = v["id"]
        v = finished(api, bid)
        with lock:
            during = len(results)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    assert v["state"] == "done" and v["created"] == 100000 and v["progress"] == 1.0, v
    assert v["space"] == 31 ** 10 and v["format"]["check"] is True
    # redemptions went on during the whole job, all of them answered
    assert during > 0 and {s for _, s, _ in results} == {201}, results[:5]
    assert 0 < v["redis_bytes_per_code"] < 200, v  # the per-code hash holds one field

    codes = codes_of(api, bid)
    assert len(codes) == 100000 and len(set(codes)) == 100000
    assert all(re.fullmatch(r"V-[2-9A-HJKMNP-Z]{11}", c) for c in codes), codes[:3]
    assert in_redis(redis, codes, bid) == 100000

    one = api.get(f"/v1/coupons/{codes[0]}").json()
    assert one["batch"] == bid and one["campaign"] == "spring" and one["tags"] == ["VIP"]
    assert one["expires_at"] == "2030-06-14T12:00:00Z" and one["limits"]["total"] == 1

    sample = random.sample(codes, 300)
    with ThreadPoolExecutor(16) as ex:
        got = list(ex.map(lambda c: api.redeem(c, now=NOW).status_code, sample))
    assert got == [201] * 300
    again = [api.redeem(c, user="bob", now=NOW) for c in sample[:20]]
    assert {a.json()["error"]["code"] for a in again} == {"limit_total_reached"}
    # a near miss of a real code is not a code
    typo = sample[0][:-1] + ("2" if sample[0][-1] != "2" else "3")
    assert api.redeem(typo, now=NOW).json()["error"]["code"] == "coupon_not_found"

    # listing and stats see the batch like any other coupons
    page = api.get(f"/v1/coupons?batch={bid}&limit=1000").json()
    assert len(page["data"]) == 1000 and page["has_more"] and page["data"][0]["batch"] == bid
    drained(d)
    used = api.get(f"/v1/coupons?batch={bid}&status=used", headers={"Accept": "text/csv"})
    assert sorted(row.split(",")[0] for row in used.text.split("\r\n")[1:] if row) == \
        sorted(sample)
    s = api.get("/v1/stats", headers={"X-Redeemd-Now": NOW}).json()
    spring = [c for c in s["campaigns"] if c["campaign"] == "spring"]
    assert spring == [{"campaign": "spring", "coupons": 100000, "uses": 300, "active": 99700,
                       "exhausted": 300, "expired": 0, "disabled": 0}], spring
    rc, out = reconcile(redis, db)
    assert rc == 0 and "no differences" in out, out


def test_bad_batches_are_refused(api):
    r = batch(api, 100, {"prefix": "TINY", "pattern": "##", "alphabet": "AB"})
    assert r.status_code == 422, r.text
    e = r.json()["error"]
    assert e["code"] == "format_too_small"
    assert e["details"] == {"field": "count", "requested": 100, "space": 4, "max_count": 2}
    # half the space is the most
    assert batch(api, 8, {"prefix": "HALF", "pattern": "##", "alphabet": "0123"}).status_code == 202
    assert batch(api, 9, {"prefix": "HALF", "pattern": "##", "alphabet": "0123"}).status_code == 422
    for body, field in [
            ({"count": 0, "template": DISCOUNT}, "count"),
            ({"count": 10000001, "template": DISCOUNT}, "count"),
            ({"count": 1.5, "template": DISCOUNT}, "count"),
            ({"template": DISCOUNT}, "count"),
            ({"count": 5}, "template"),
            ({"count": 5, "template": dict(DISCOUNT, code="X1")}, "template.code"),
            ({"count": 5, "template": {"discount": {"type": "percent", "value": 0}}},
             "template.discount.value"),
            ({"count": 5, "template": {"kind": "voucher", "balance": 10}}, "template.currency"),
            ({"count": 5, "template": DISCOUNT, "format": {"length": 3, "pattern": "#"}},
             "format.pattern"),
            ({"count": 5, "template": DISCOUNT, "format": {"alphabet": "A!"}}, "format.alphabet"),
            ({"count": 5, "template": DISCOUNT, "format": {"prefix": "-X"}}, "format"),
            ({"count": 5, "template": DISCOUNT, "format": {"size": 3}}, "format.size"),
            ({"count": 5, "template": DISCOUNT, "colour": "red"}, "colour")]:
        r = api.post("/v1/batches", body)
        assert r.status_code == 400, (body, r.text)
        assert r.json()["error"]["details"]["field"] == field, (body, r.text)
    for path in ["/v1/batches/nope", "/v1/batches/b_0000000000", "/v1/batches/b_0000000000/codes"]:
        r = api.get(path)
        assert r.status_code == 404 and r.json()["error"]["code"] == "batch_not_found"
    r = api.post("/v1/batches/b_0000000000/cancel")
    assert r.status_code == 404 and r.json()["error"]["code"] == "batch_not_found"


def test_idempotent_create(api):
    body = {"count": 3, "template": DISCOUNT, "format": {"prefix": "IDEM"}}
    a = api.post("/v1/batches", body, headers={"Idempotency-Key": "batch-1"})
    b = api.post("/v1/batches", body, headers={"Idempotency-Key": "batch-1"})
    assert a.status_code == b.status_code == 202
    assert a.json()["id"] == b.json()["id"] and b.headers.get("Idempotent-Replayed") == "true"
    c = api.post("/v1/batches", dict(body, count=4), headers={"Idempotency-Key": "batch-1"})
    assert c.status_code == 409 and c.json()["error"]["code"] == "idempotency_key_reused"
    assert finished(api, a.json()["id"])["created"] == 3


@pytest.mark.daemon_args("--batch_rate=3000", "--batch_chunk=500")
def test_cancel_stops_a_running_job_and_a_queued_one(stack):
    redis, d, api, db = stack
    big = batch(api, 1000000, {"prefix": "CXL"}).json()
    queued = batch(api, 10, {"prefix": "QUE"}).json()
    wait_for(lambda: api.get(f"/v1/batches/{big['id']}").json()["created"] >= 1000,
             what="the job to start")
    # the second job waits behind the first: cancelling it ends it at once
    r = api.post(f"/v1/batches/{queued['id']}/cancel")
    assert r.status_code == 200 and r.json()["state"] == "cancelled", r.text
    r = api.post(f"/v1/batches/{big['id']}/cancel")
    assert r.status_code == 202 and r.json()["cancel_requested"] is True, r.text
    v = finished(api, big["id"])
    assert v["state"] == "cancelled" and 1000 <= v["created"] < 1000000, v
    time.sleep(1.5)  # nothing more is issued after the end
    assert api.get(f"/v1/batches/{big['id']}").json()["created"] == v["created"]
    codes = codes_of(api, big["id"])
    assert len(codes) == v["created"] == in_redis(redis, codes, big["id"])
    assert redeemable(api, codes[-1])  # what was issued stays valid
    q = api.get(f"/v1/batches/{queued['id']}").json()
    assert q["state"] == "cancelled" and q["created"] == 0 and q["started_at"] is None
    r = api.post(f"/v1/batches/{big['id']}/cancel")
    assert r.status_code == 409 and r.json()["error"]["code"] == "batch_finished"
    audit = rows(db, "SELECT action FROM audit_log WHERE txn_id LIKE %s ORDER BY action",
                 big["id"] + "%")
    assert audit == [("batch_cancel",), ("batch_create",)]


def redeemable(api, code):
    return api.validate(code, now=NOW).json().get("valid") is True


def test_unique_against_existing_and_archived_codes(stack):
    """A space of 100 codes (U00..U99): 50 exist (10 of them archived out of Redis), so a
    batch of 40 can only draw from the other 50."""
    redis, d, api, db = stack
    taken = [f"U{i:02d}" for i in range(50)]
    for c in taken:
        api.create(code=c, campaign="mine")
    for c in taken[:10]:
        assert api.post(f"/v1/coupons/{c}/disable").status_code == 200
    drained(d)
    archive(redis, db, "--state", "disabled", "--prefix", "U")
    drained(d)
    assert api.redeem("U00").json()["error"]["code"] == "coupon_not_found"
    v = finished(api, batch(api, 40, {"prefix": "U", "pattern": "##",
                                      "alphabet": "0123456789"}).json()["id"])
    assert v["state"] == "done" and v["created"] == 40, v
    codes = codes_of(api, v["id"])
    assert len(set(codes)) == 40 and not set(codes) & set(taken)
    assert in_redis(redis, codes, v["id"]) == 40
    mine = api.get("/v1/coupons/U10").json()
    assert mine["batch"] is None and mine["campaign"] == "mine"
    assert api.get("/v1/coupons/U00").json()["status"] == "archived"


@pytest.mark.daemon_args("--shipper=false")
def test_codes_only_redis_knows_yet_are_skipped(stack):
    """Coupons just created through the API whose ledger entries have not reached the mirror
    (no shipper here): the batch finds them in Redis, withdraws them and draws others."""
    redis, d, api, db = stack
    taken = [f"W{i:02d}" for i in range(50)]
    for c in taken:
        api.create(code=c)
    v = finished(api, batch(api, 45, {"prefix": "W", "pattern": "##",
                                      "alphabet": "0123456789"}).json()["id"])
    assert v["state"] == "done" and v["created"] == 45, v
    codes = codes_of(api, v["id"])
    assert len(set(codes)) == 45 and not set(codes) & set(taken)
    assert in_redis(redis, codes, v["id"]) == 45
    for c in taken:  # untouched
        assert api.get(f"/v1/coupons/{c}").json()["batch"] is None


def test_batch_codes_each_keep_their_own_state(stack):
    """Vouchers of one batch share a template, never their money; an edit, a disable, a
    share or an archive of one code leaves the others as they were."""
    redis, d, api, db = stack
    v = finished(api, batch(api, 5, {"prefix": "GIFT"},
                            {"kind": "voucher", "balance": 5000, "currency": "EUR",
                             "campaign": "xmas", "limits": {"per_user": 2}}).json()["id"])
    a, b, c, e, f = codes_of(api, v["id"])
    pay = api.post(f"/v1/vouchers/{a}/pay", {"amount": 1200, "currency": "EUR", "user_id": "u1"},
                   headers={"Idempotency-Key": "p1"})
    assert pay.status_code == 201 and pay.json()["balance"] == 3800, pay.text
    assert api.post(f"/v1/vouchers/{b}/recharge", {"amount": 700},
                    headers={"Idempotency-Key": "r1"}).json()["balance"] == 5700
    back = api.post(f"/v1/redemptions/{pay.json()['id']}/reverse", {"amount": 200},
                    headers={"Idempotency-Key": "f1"})
    assert back.status_code in (200, 201), back.text
    bal = {x: api.get(f"/v1/vouchers/{x}/balance").json() for x in (a, b, c)}
    assert (bal[a]["balance"], bal[a]["spent"], bal[a]["refunded"]) == (4000, 1200, 200)
    assert (bal[b]["balance"], bal[b]["loaded"]) == (5700, 5700)
    assert (bal[c]["balance"], bal[c]["loaded"], bal[c]["spent"]) == (5000, 5000, 0)
    r = api.patch(f"/v1/coupons/{c}", {"campaign": "xmas-vip", "limits": {"per_user": 5}})
    assert r.status_code == 200 and r.json()["campaign"] == "xmas-vip", r.text
    assert r.json()["batch"] == v["id"] and r.json()["balance"] == 5000
    assert api.get(f"/v1/coupons/{e}").json()["campaign"] == "xmas"
    assert api.post(f"/v1/coupons/{e}/disable").status_code == 200
    assert api.get(f"/v1/coupons/{f}").json()["status"] == "active"
    s = api.post(f"/v1/coupons/{f}/share", {"channel": "email", "recipient": "x@example.com"})
    assert s.status_code == 200 and s.json()["shares"] == 1
    assert api.get(f"/v1/coupons/{a}").json()["shares"] == 0
    drained(d)
    archive(redis, db, "--state", "disabled", "--prefix", "GIFT")
    drained(d)  # the mirror learns of the archive from the ledger
    arch = api.get(f"/v1/coupons/{e}")
    assert arch.status_code == 200 and arch.json()["status"] == "archived", arch.text
    assert api.post(f"/v1/vouchers/{e}/pay", {"amount": 1, "currency": "EUR", "user_id": "u"},
                    headers={"Idempotency-Key": "p2"}).json()["error"]["code"] == \
        "coupon_not_found"
    listed = {x["code"]: x for x in api.get(f"/v1/coupons?batch={v['id']}").json()["data"]}
    assert listed[c]["campaign"] == "xmas-vip" and listed[a]["balance"] == 4000
    assert listed[e]["status"] == "archived" and listed[f]["shares"] == 1
    rc, out = reconcile(redis, db)
    assert rc == 0 and "no differences" in out, out


@pytest.mark.daemon_args("--batch_rate=4000", "--batch_chunk=500", "--batch_lease_ms=1000")
def test_a_job_survives_a_crash_and_a_stop(stack):
    redis, d, api, db = stack
    bid = batch(api, 30000, {"prefix": "CR"}).json()["id"]
    wait_for(lambda: api.get(f"/v1/batches/{bid}").json()["created"] >= 4000, what="progress")
    d.stop(sig=signal.SIGKILL, expect=None)
    d.start()
    wait_for(lambda: api.get(f"/v1/batches/{bid}").json()["created"] >= 12000,
             timeout=60, what="the job resumed")
    d.stop()  # SIGTERM: the job goes back to the queue between two chunks
    mid = rows(db, "SELECT state, created FROM batches WHERE id = %s", bid)[0]
    assert mid[0] == "queued" and mid[1] == rows(
        db, "SELECT count(*) FROM coupon_rows WHERE batch_id = %s", bid)[0][0]
    d.start()
    v = finished(api, bid)
    assert v["state"] == "done" and v["created"] == 30000, v
    codes = codes_of(api, bid)
    assert len(set(codes)) == 30000 and in_redis(redis, codes, bid) == 30000
    assert "batch_resumed" in d.log(full=True) and "batch_requeued" in d.log(full=True)


def test_redeemctl_batch_progress_and_codes(daemon, keys, tmp_path):
    out = tmp_path / "codes.csv"
    p = subprocess.run([REDEEMCTL, "batch", "--url", daemon.url, "--key", keys["admin"],
                        '{"count": 2000, "format": {"prefix": "CTL", "pattern": "-####"},'
                        ' "template": {"discount": {"type": "fixed", "value": 500},'
                        ' "currency": "EUR", "tags": ["Regular"]}}', "--out", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "queued" in p.stderr and "100%  2000/2000 codes" in p.stderr, p.stderr
    assert "codes written to" in p.stderr
    lines = out.read_bytes().decode().split("\r\n")
    assert lines[0] == "code" and len(set(x for x in lines[1:] if x)) == 2000
    bid = re.search(r'"id":"(b_[0-9a-z]+)"', p.stdout).group(1)
    # --url and --key may also come before the command, with the settings
    st = subprocess.run([REDEEMCTL, "--url", daemon.url, "--key", keys["admin"], "batch",
                         "status", bid], capture_output=True, text=True, timeout=30)
    assert st.returncode == 0 and '"state":"done"' in st.stdout.replace(" ", "")
    bad = subprocess.run([REDEEMCTL, "batch", "--url", daemon.url, "--key", keys["admin"],
                          '{"count": 50, "format": {"prefix": "BAD", "pattern": "#", "alphabet": "AB"},'
                          ' "template": {"discount": {"type": "percent", "value": 5}}}'],
                         capture_output=True, text=True, timeout=30)
    assert bad.returncode == 1 and "format_too_small" in bad.stderr


def test_status_filters_over_batch_codes_follow_the_template_and_edits(stack):
    """expired, scheduled and disabled pages walk stored fields resolved from a code's own
    definition, else its batch's template (010); an edit of one code moves only that code,
    and the migration resolves the rows of an existing install alike."""
    redis, d, api, db = stack
    then = {"headers": {"X-Redeemd-Now": "2029-06-01T00:00:00Z"}}  # before the window
    tpl = dict(DISCOUNT, starts_at="2030-01-01T00:00:00Z", expires_at="2030-02-01T00:00:00Z")
    bid = finished(api, batch(api, 6, {"prefix": "WIN"}, tpl, **then).json()["id"])["id"]
    a, b, c, e, f, g = sorted(codes_of(api, bid))
    r = api.patch(f"/v1/coupons/{b}", {"expires_at": "2030-06-01T00:00:00Z"}, **then)
    assert r.status_code == 200, r.text
    assert api.post(f"/v1/coupons/{c}/disable", **then).status_code == 200
    drained(d)

    def page(status, now):
        r = api.get(f"/v1/coupons?batch={bid}&status={status}",
                    headers={"X-Redeemd-Now": now})
        assert r.status_code == 200, r.text
        return [x["code"] for x in r.json()["data"]]

    def all_pages():
        return {(s, now): page(s, now)
                for s in ("scheduled", "active", "expired", "disabled")
                for now in ("2029-12-01T00:00:00Z", "2030-01-15T00:00:00Z",
                            "2030-03-01T00:00:00Z")}

    got = all_pages()
    assert got[("scheduled", "2029-12-01T00:00:00Z")] == [a, b, e, f, g]
    assert got[("active", "2030-01-15T00:00:00Z")] == [a, b, e, f, g]
    assert got[("expired", "2030-03-01T00:00:00Z")] == [a, e, f, g]
    assert got[("active", "2030-03-01T00:00:00Z")] == [b]
    assert got[("disabled", "2030-03-01T00:00:00Z")] == [c]
    assert got[("expired", "2030-01-15T00:00:00Z")] == []
    # an install upgraded to 010: its rows resolved by the migration, the same pages
    d.stop()
    with psycopg2.connect(db) as conn, conn.cursor() as cur:
        cur.execute("UPDATE coupon_rows SET eff_expires = NULL, eff_starts = NULL, "
                    "eff_disabled = false; DELETE FROM schema_migrations WHERE version >= '010'")
    migrate(db)
    d.start()
    assert all_pages() == got
