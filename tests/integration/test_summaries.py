"""The summaries the back office reads (coupon_usage, usage_hourly, usage_hourly_all) are
kept by the shipper in the transaction that writes the ledger rows. Whatever happens (a
mixed run, entries delivered twice, a shipper killed between COMMIT and XACK) they equal a
recount of the ledger, and the listing, the stats and archived reads show them."""
import random
import signal
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import psycopg2
import pytest
import requests

from conftest import Api, migrate, wait_for
from test_ledger import drained, rows
from test_vouchers import pay, recharge, refund, voucher


def assert_summaries_match(db):
    got = rows(db, "SELECT code, used, uses, reversed, shares, recharged, spent, refunded, "
                   "last_use FROM coupon_usage WHERE uses + shares + recharged + refunded > 0 "
                   "ORDER BY code")
    want = rows(db, "SELECT * FROM rd_usage_recount() ORDER BY code")
    assert got == want
    hourly = "SELECT %s, count(*), coalesce(sum(paid_amount), 0), " \
             "coalesce(sum(discount_amount), 0) FROM transactions GROUP BY %s ORDER BY %s"
    keys = "coalesce(code, ''), date_trunc('hour', ts, 'UTC'), kind, outcome, coalesce(reason, '')"
    assert rows(db, "SELECT code, hour, kind, outcome, reason, n, amount, discount FROM "
                    "usage_hourly ORDER BY 1, 2, 3, 4, 5") == \
        rows(db, hourly % (keys, "1, 2, 3, 4, 5", "1, 2, 3, 4, 5"))
    # the stats' coupon groups, kept by triggers, equal a recount too
    groups = "SELECT campaign, kind, class, exhausted, used, starts, expires, n, uses, loaded, " \
             "spent, refunded FROM %s ORDER BY 1, 2, 3, 4, 5, 6, 7"
    assert rows(db, groups % "coupon_groups") == rows(db, groups % "rd_groups_recount()")
    keys = "date_trunc('hour', ts, 'UTC'), kind, outcome, coalesce(reason, '')"
    assert rows(db, "SELECT hour, kind, outcome, reason, n, amount, discount FROM "
                    "usage_hourly_all ORDER BY 1, 2, 3, 4") == \
        rows(db, hourly % (keys, "1, 2, 3, 4", "1, 2, 3, 4"))


def mixed_run(d, api, n_threads=6, per_thread=40):
    """Redemptions accepted and refused, reversals, probes, shares, payments with partial and
    full refunds and recharges, from several threads at once."""
    coupons = [api.create(limits={"total": 60, "per_user": 3}, campaign="mix")["code"]
               for _ in range(3)]
    vouchers = [voucher(api, 5000, campaign="mix")["code"] for _ in range(2)]

    def worker(seed):
        rnd = random.Random(seed)
        a = Api(d.url, api.key)
        for i in range(per_thread):
            x = rnd.random()
            if x < 0.45:
                r = a.redeem(rnd.choice(coupons), user=f"u{rnd.randrange(30)}")
                if r.status_code == 201 and rnd.random() < 0.3:
                    a.post(f"/v1/redemptions/{r.json()['id']}/reverse")
            elif x < 0.55:
                a.validate(f"NOPE-{seed}-{i}")
            elif x < 0.6:
                a.post(f"/v1/coupons/{rnd.choice(coupons)}/share",
                       {"channel": "email", "recipient": f"r{i}@example.com"})
            elif x < 0.9:
                p = pay(a, rnd.choice(vouchers), rnd.randrange(1, 400),
                        user=f"p{rnd.randrange(20)}")
                if p.status_code == 201 and rnd.random() < 0.5:
                    amount = p.json()["amount"]
                    refund(a, p.json()["id"], rnd.choice([None, max(1, amount // 2)]))
            else:
                recharge(a, rnd.choice(vouchers), rnd.randrange(1, 300))

    with ThreadPoolExecutor(n_threads) as ex:
        list(ex.map(worker, range(n_threads)))
    return coupons, vouchers


def test_summaries_equal_a_recount_after_a_mixed_run(stack):
    redis, d, api, db = stack
    coupons, vouchers = mixed_run(d, api)
    drained(d)
    assert_summaries_match(db)
    # and the reads show them: the listing and the stats agree with Redis' own counters
    listed = {c["code"]: c for c in api.get("/v1/coupons?campaign=mix&limit=100").json()["data"]}
    for code in coupons + vouchers:
        live = api.get(f"/v1/coupons/{code}").json()
        assert listed[code]["used"] == live["used"]["total"], code
    for code in vouchers:
        assert listed[code]["balance"] == \
            api.get(f"/v1/vouchers/{code}/balance").json()["balance"]
    stats = api.get("/v1/stats").json()
    mix = next(c for c in stats["campaigns"] if c["campaign"] == "mix")
    assert mix["uses"] == sum(listed[c]["used"] for c in coupons + vouchers)


@pytest.mark.daemon_args("--ship_pause_after_commit_ms=3000")
def test_summaries_count_a_redelivered_entry_once(stack):
    redis, d, api, db = stack
    c = api.create()
    ids = {api.redeem(c["code"], user=f"r{i}").json()["id"] for i in range(25)}
    wait_for(lambda: "action=pause_before_xack" in d.log(), what="committed batch")
    shipped = requests.get(d.url + "/readyz", timeout=5).json()["ledger"]["shipped_rows"]
    r = redis.client()
    for b in {i.split("_")[1] for i in ids}:
        r.xgroup_setid(f"{{{b}}}:log", "pgsink", "0")  # the whole stream is delivered again
    wait_for(lambda: requests.get(d.url + "/readyz", timeout=5).json()["ledger"]["shipped_rows"]
             >= shipped + 25, timeout=30, what="re-delivery shipped")
    drained(d)
    assert rows(db, "SELECT used, uses FROM coupon_usage WHERE code = %s", c["code"]) == \
        [(25, 25)]
    assert_summaries_match(db)


@pytest.mark.daemon_args("--ship_pause_after_commit_ms=1500", "--ship_batch=20")
def test_summaries_after_a_kill_between_commit_and_xack(stack):
    redis, d, api, db = stack
    stop = threading.Event()

    def load():
        a = Api(d.url, api.key)
        c = a.create(limits={"per_user": 2})["code"]
        v = voucher(a, 100000)["code"]
        while not stop.is_set():
            try:
                red = a.redeem(c, user=uuid.uuid4().hex[:6])
                if red.status_code == 201:
                    a.post(f"/v1/redemptions/{red.json()['id']}/reverse")
                p = pay(a, v, 7)
                if p.status_code == 201:
                    refund(a, p.json()["id"])
            except requests.RequestException:
                pass  # the daemon is being killed

    threads = [threading.Thread(target=load) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: "action=pause_before_xack" in d.log(), timeout=20,
                 what="a batch committed and waiting for XACK")
        d.proc.send_signal(signal.SIGKILL)
        d.proc.wait()
        d.proc = None
        d.extra = [a for a in d.extra if not a.startswith("--ship_pause")]
        d.start()
        wait_for(lambda: api.get("/v1/coupons/NONE").status_code == 404, what="back")
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    drained(d)
    assert_summaries_match(db)


def test_migrations_backfill_the_summaries_of_an_existing_ledger(stack):
    """An install upgraded from before the summaries: its ledger is summed up by migrations
    007 and 008 (simulated here by emptying the summaries and forgetting the migrations)."""
    redis, d, api, db = stack
    mixed_run(d, api, n_threads=3, per_thread=30)
    drained(d)
    d.stop()
    want = (rows(db, "SELECT * FROM coupon_usage ORDER BY code"),
            rows(db, "SELECT * FROM usage_hourly ORDER BY 1, 2, 3, 4, 5"),
            rows(db, "SELECT * FROM coupon_groups ORDER BY 1, 2, 3, 4, 5, 6, 7"))
    assert want[0] and want[1] and want[2]
    with psycopg2.connect(db) as conn, conn.cursor() as cur:
        cur.execute("DELETE FROM coupon_usage; DELETE FROM usage_hourly; "
                    "DELETE FROM usage_hourly_all; DELETE FROM coupon_groups; "
                    "DELETE FROM schema_migrations WHERE version >= '007'")
    assert rows(db, "SELECT count(*) FROM coupon_usage") == [(0,)]
    migrate(db)
    assert (rows(db, "SELECT * FROM coupon_usage ORDER BY code"),
            rows(db, "SELECT * FROM usage_hourly ORDER BY 1, 2, 3, 4, 5"),
            rows(db, "SELECT * FROM coupon_groups ORDER BY 1, 2, 3, 4, 5, 6, 7")) == want
    assert_summaries_match(db)


def test_fraud_windows_equal_the_views(stack):
    """rd_user_attempts and rd_ip_failures (011) answer a window as the whole-ledger views
    do, hour by hour."""
    redis, d, api, db = stack
    mixed_run(d, api, n_threads=3, per_thread=30)
    for i in range(5):
        api.validate(f"NOPE-WINDOW-{i}", now="2030-03-01T10:00:00Z")
    drained(d)
    with psycopg2.connect(db) as conn, conn.cursor() as cur:
        cur.execute("SET TIME ZONE 'UTC'")
        for view, fn in (("user_attempts_hourly", "rd_user_attempts"),
                         ("ip_failures_hourly", "rd_ip_failures")):
            cur.execute(f"SELECT * FROM {view} ORDER BY 1, 2")
            want = cur.fetchall()
            cur.execute(f"SELECT * FROM {fn}('-infinity', 'infinity') ORDER BY 1, 2")
            assert cur.fetchall() == want and want
            cur.execute(f"SELECT * FROM {view} WHERE hour >= '2030-03-01' "
                        "AND hour < '2030-03-02' ORDER BY 1, 2")
            want = cur.fetchall()
            cur.execute(f"SELECT * FROM {fn}('2030-03-01', '2030-03-02') ORDER BY 1, 2")
            assert cur.fetchall() == want
    assert want and want[0][2] == 5  # the probes of that hour, from one address
