"""redeemctl retention: ledger months wholly before the window are detached and dropped; the
summaries the back office reads (per-coupon usage, hourly rollups, stats) keep their figures,
the rows inside the window stay, and the shipper goes on writing. The clock is injected
(X-Redeemd-Now for the uses, --now for the command)."""
import subprocess

import psycopg2
import psycopg2.errors
import pytest

from conftest import REDEEMCTL, redis_flags
from test_ledger import drained, rows

OLD = "2030-01-15T10:00:00Z"  # in a month the window leaves behind
EDGE = "2030-05-01T00:00:00Z"  # the first instant the window keeps
KEPT = "2030-06-10T10:00:00Z"
NEW = "2031-05-20T10:00:00Z"
NOW = "2031-06-01T00:00:00Z"  # 13 months after 2030-05-01
# (coupons are created on redeemd's own clock: their rows are elsewhere)
IN_2030_BEFORE_EDGE = "SELECT count(*) FROM transactions WHERE ts >= '2030-01-01' AND ts < %s"


def retention(redis, db, *args):
    p = subprocess.run([REDEEMCTL] + redis_flags(redis.port) + [f"--pg_conninfo={db}",
                        "retention", "--now", NOW] + list(args),
                       capture_output=True, text=True, timeout=120)
    return p.returncode, p.stdout, p.stderr


def summaries(db):
    return (rows(db, "SELECT * FROM coupon_usage ORDER BY code"),
            rows(db, "SELECT * FROM usage_hourly ORDER BY code, hour, kind, outcome, reason"),
            rows(db, "SELECT * FROM usage_hourly_all ORDER BY hour, kind, outcome, reason"),
            rows(db, "SELECT * FROM coupon_groups ORDER BY 1, 2, 3, 4, 5, 6, 7"))


def test_retention_drops_old_months_and_keeps_the_summaries(stack):
    redis, d, api, db = stack
    c = api.create(limits={"per_user": 10})["code"]
    for when, n in ((OLD, 3), (EDGE, 1), (KEPT, 2), (NEW, 1)):
        for i in range(n):
            assert api.redeem(c, user=f"u{i}", now=when).status_code == 201
    api.validate("NOPE-RETENTION", now=OLD)
    drained(d)
    before = summaries(db)
    live = api.get(f"/v1/coupons/{c}").json()["used"]
    stats = api.get("/v1/stats", headers={"X-Redeemd-Now": NOW}).json()

    # the window must cover the reversal window; the unit is required
    code, out, err = retention(redis, db, "--keep", "1mo")
    assert code == 2 and "reversal window" in err
    code, out, err = retention(redis, db, "--keep", "13")
    assert code == 2 and "--keep" in err

    code, out, err = retention(redis, db, "--keep", "13mo", "--dry-run")
    assert code == 0 and "would drop transactions_203001" in out, err
    assert "transactions_203005" not in out and "transactions_203006" not in out
    assert rows(db, IN_2030_BEFORE_EDGE, EDGE) == [(4,)]

    code, out, err = retention(redis, db, "--keep", "13mo")
    assert code == 0 and "dropped transactions_203001: 4 rows" in out, err
    assert rows(db, IN_2030_BEFORE_EDGE, EDGE) == [(0,)]
    assert rows(db, "SELECT to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD') FROM transactions "
                    "WHERE kind = 'redeem' ORDER BY ts") == \
        [("2030-05-01",), ("2030-06-10",), ("2030-06-10",), ("2031-05-20",)]
    assert rows(db, "SELECT to_regclass('transactions_203001') IS NULL") == [(True,)]
    # what was dropped, in the audit log
    assert rows(db, "SELECT after->>'partition', after->>'rows', after->>'up_to' FROM audit_log "
                    "WHERE action = 'ledger_retention' AND after->>'partition' = "
                    "'transactions_203001'") == [("transactions_203001", "4",
                                                  "2030-02-01T00:00:00Z")]

    # the page bounds of the dropped month went with it; a window over what is kept pages
    assert rows(db, "SELECT count(*) FROM ledger_batches WHERE max_ts < '2030-02-01'") == [(0,)]
    page = api.get(f"/v1/transactions?code={c}&kind=redeem&from=2030-01-01T00:00:00Z"
                   "&to=2030-07-01T00:00:00Z").json()["data"]
    assert [t["user_id"] for t in page] == ["u0", "u0", "u1"]

    # the summaries and what the back office reads are as they were
    assert summaries(db) == before
    assert api.get(f"/v1/coupons/{c}").json()["used"] == live
    assert api.get("/v1/stats", headers={"X-Redeemd-Now": NOW}).json() == stats

    # a second run has nothing left to drop; the shipper writes on
    code, out, err = retention(redis, db, "--keep", "13mo")
    assert code == 0 and "dropped" not in out and "0 partitions dropped" in err
    assert api.redeem(c, user="after", now=NOW).status_code == 201
    drained(d)
    assert rows(db, "SELECT count(*) FROM transactions WHERE user_id = 'after'") == [(1,)]
    assert rows(db, "SELECT used FROM coupon_usage WHERE code = %s", c) == [(before[0][0][1] + 1,)]


def test_retention_finishes_a_detach_left_pending(stack):
    """A run stopped while DETACH ... CONCURRENTLY waits leaves the partition "detach
    pending"; the next run finalises and drops it."""
    redis, d, api, db = stack
    c = api.create()["code"]
    assert api.redeem(c, user="x", now=OLD).status_code == 201
    assert api.redeem(c, user="y", now=KEPT).status_code == 201
    drained(d)
    reader = psycopg2.connect(db)  # a transaction that has read the ledger: the detach waits
    with reader.cursor() as cur:
        cur.execute("SELECT count(*) FROM transactions")
    stopped = psycopg2.connect(db)
    stopped.autocommit = True
    with stopped.cursor() as cur:
        cur.execute("SET statement_timeout = '500ms'")
        with pytest.raises(psycopg2.errors.QueryCanceled):
            cur.execute("ALTER TABLE transactions DETACH PARTITION transactions_203001 "
                        "CONCURRENTLY")
    stopped.close()
    reader.rollback()
    reader.close()
    assert rows(db, "SELECT i.inhdetachpending FROM pg_inherits i JOIN pg_class c ON "
                    "c.oid = i.inhrelid WHERE c.relname = 'transactions_203001'") == [(True,)]
    code, out, err = retention(redis, db, "--keep", "13mo")
    assert code == 0 and "dropped transactions_203001: 1 rows" in out, err
    assert rows(db, "SELECT to_regclass('transactions_203001') IS NULL") == [(True,)]
    assert rows(db, "SELECT user_id FROM transactions WHERE kind = 'redeem'") == [("y",)]
