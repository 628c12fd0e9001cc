"""The ledger: every attempt is one row in PostgreSQL, exactly once, whatever crashes in
between. Checked against what the HTTP responses said."""
import signal
import threading
import time
import uuid

import psycopg2
import pytest
import redis as redis_lib
import requests

from conftest import Api, outbox_len, start_load, wait_for


def pgconn(conninfo, user=None):
    c = psycopg2.connect(conninfo, **({"user": user} if user else {}))
    c.autocommit = True
    return c


def rows(conninfo, sql, *args):
    c = pgconn(conninfo)
    try:
        with c.cursor() as cur:
            cur.execute(sql, args)
            return cur.fetchall()
    finally:
        c.close()


def count_mark(daemon):
    """The number of the backlog count the daemon has published so far (/readyz): a count
    with a higher number was taken later (no clock is compared)."""
    return requests.get(daemon.url + "/readyz", timeout=5).json()["ledger"]["backlog_count"]


def counted_after(j, mark):
    """True if the backlog in the /readyz answer j was counted after mark was read (a count
    in progress at that moment may have read the streams before it: one more is needed)."""
    return j["ledger"]["backlog_count"] > mark + 1


def drained(daemon, timeout=60):
    """Waits until the outbox streams are empty (everything shipped and acknowledged),
    as counted after this call: a count taken before the last write does not count."""
    mark = count_mark(daemon)

    def empty():
        j = requests.get(daemon.url + "/readyz", timeout=5).json()
        return counted_after(j, mark) and j["outbox_backlog"] == 0
    wait_for(empty, timeout=timeout, step=0.1, what="outbox backlog to drain")


def test_mixed_run_matches_responses(stack):
    redis, d, api, db = stack
    c = api.create(limits={"total": 30, "per_user": 2},
                   discount={"type": "percent", "value": 1250, "max_amount": 700})
    code = c["code"]
    seen = {}  # txn id -> (status, body)
    for i in range(12):
        r = api.redeem(code, user=f"m{i % 5}", amount=1000 + 137 * i, key=f"mix-{i}",
                       order_id=f"o-{i}", metadata={"n": str(i)})
        seen.setdefault(r.json().get("id") or r.json()["error"]["details"]["attempt_id"], r)
    replay = api.redeem(code, user="m0", amount=1000, key="mix-0", order_id="o-0",
                        metadata={"n": "0"})
    assert replay.headers.get("Idempotent-Replayed") == "true"
    accepted = [r for r in seen.values() if r.status_code == 201]
    rid = accepted[0].json()["id"]
    rev = api.post(f"/v1/redemptions/{rid}/reverse")
    assert rev.status_code == 200
    again = api.post(f"/v1/redemptions/{rid}/reverse")
    assert again.status_code == 409
    unknown = api.redeem("NOPE-" + uuid.uuid4().hex[:6].upper())
    assert unknown.status_code == 404
    probe = api.validate("NOPE-" + uuid.uuid4().hex[:6].upper())  # logged: a probe
    assert probe.status_code == 404
    api.validate(code)  # a dry run of a real code changes nothing and is not logged
    drained(d)

    got = rows(db, "SELECT txn_id, kind, outcome, reason, order_amount, discount_amount, "
                   "user_id, order_id, currency, host(client_ip) FROM transactions "
                   "WHERE code = %s AND kind = 'redeem'", code)
    assert len(got) == 12 == len(seen)  # the replay added nothing
    by_id = {g[0]: g for g in got}
    for tid, r in seen.items():
        g = by_id[tid]
        if r.status_code == 201:
            b = r.json()
            assert g[2] == "accepted" and g[3] is None
            assert g[4] == b["order_amount"] and g[5] == b["discount"]
            assert g[6] == b["user_id"] and g[7] == b["order_id"] and g[8] == "EUR"
            assert g[9] == "127.0.0.1"
        else:
            assert g[2] == "rejected" and g[3] == r.json()["error"]["code"] and g[5] is None
    reversals = rows(db, "SELECT outcome, reason, ref_id FROM transactions WHERE kind = "
                         "'reverse' AND code = %s ORDER BY ts, outcome", code)
    assert sorted(reversals) == sorted([("accepted", None, rid),
                                        ("rejected", "already_reversed", rid)])
    n = rows(db, "SELECT count(*) FROM transactions WHERE kind = 'validate' AND reason = "
                 "'coupon_not_found' AND request_id = %s", probe.headers["X-Request-Id"])
    assert n[0][0] == 1
    assert rows(db, "SELECT count(*) FROM transactions WHERE code = %s AND kind = 'validate'",
                code)[0][0] == 0
    # ids are unique across the whole ledger
    assert rows(db, "SELECT count(*) - count(DISTINCT txn_id) FROM transactions")[0][0] == 0
    # the admin side: audit trail with before/after, and the coupon mirror
    api.patch(f"/v1/coupons/{code}", {"limits": {"total": 40}})
    drained(d)
    audit = rows(db, "SELECT action, before, after FROM audit_log WHERE code = %s ORDER BY ts",
                 code)
    assert [a[0] for a in audit] == ["coupon_create", "coupon_update"]
    assert audit[1][1]["l_total"] == "30" and audit[1][2]["l_total"] == "40"
    mirror = rows(db, "SELECT definition->>'l_total', definition->>'dvalue' FROM coupons "
                      "WHERE code = %s", code)
    assert mirror == [("40", "1250")]


def test_concurrent_redeems_all_in_ledger(stack):
    redis, d, api, db = stack
    c = api.create(limits={"total": 60})
    results = []
    lock = threading.Lock()

    def worker(t):
        a = Api(d.url, api.key)
        for i in range(30):
            r = a.redeem(c["code"], user=f"c{t}-{i}")
            with lock:
                results.append(r)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ok = {r.json()["id"] for r in results if r.status_code == 201}
    assert len(ok) == 60
    drained(d)
    got = rows(db, "SELECT txn_id, outcome FROM transactions WHERE code = %s AND kind = "
                   "'redeem'", c["code"])
    assert len(got) == 180
    assert {g[0] for g in got if g[1] == "accepted"} == ok


@pytest.mark.daemon_args("--ship_pause_after_commit_ms=1500", "--ship_batch=50")
def test_kill_between_commit_and_xack(stack):
    redis, d, api, db = stack
    c = api.create()
    stop, results, lock, threads = start_load(d, api.key, c["code"], 3, "k")
    try:
        wait_for(lambda: "action=pause_before_xack" in d.log(), timeout=20,
                 what="a batch committed and waiting for XACK")
    except AssertionError:
        stop.set()
        raise
    d.proc.send_signal(signal.SIGKILL)  # between COMMIT and XACK
    d.proc.wait()
    d.proc = None
    d.extra = [a for a in d.extra if not a.startswith("--ship_pause")]
    n = len(results)
    d.start()
    wait_for(lambda: len(results) >= n + 20, what="load running on the new daemon")
    stop.set()
    for t in threads:
        t.join(timeout=30)
    drained(d)
    accepted = {rid for _, s, rid in results if s == 201}
    assert accepted
    got = rows(db, "SELECT txn_id, count(*) FROM transactions WHERE code = %s AND outcome = "
                   "'accepted' AND kind = 'redeem' GROUP BY 1", c["code"])
    assert all(n == 1 for _, n in got)
    assert {g[0] for g in got} == accepted
    used = int(api.get(f"/v1/coupons/{c['code']}").json()["used"]["total"])
    assert used == len(accepted)


def test_postgres_outage(stack, pg):
    redis, d, api, db = stack
    c = api.create()
    stop, results, lock, threads = start_load(d, api.key, c["code"], 2, "p")
    try:
        wait_for(lambda: len(results) >= 10, what="load running")
        pg.stop()
        try:
            before = len(results)
            time.sleep(30)
            with lock:
                during = [s for _, s, _ in results[before:]]
            assert during and all(s == 201 for s in during), set(during)
            # a count taken after the last answer: PostgreSQL is down, so nothing shipped
            mark = count_mark(d)
            j = {}
            wait_for(lambda: counted_after(j.update(requests.get(d.url + "/readyz",
                                                                 timeout=5).json()) or j, mark),
                     what="a backlog count")
            assert j["outbox_backlog"] >= len(during) > 0
            # PostgreSQL down fails no readiness: redemptions go on
            assert j["status"] == "ready" and j["ledger"]["postgres"] == "down", j
        finally:
            pg.start()
        n = len(results)
        wait_for(lambda: len(results) >= n + 10, what="load running after PostgreSQL is back")
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    drained(d, timeout=90)
    accepted = {rid for _, s, rid in results if s == 201}
    got = rows(db, "SELECT txn_id FROM transactions WHERE code = %s AND outcome = 'accepted' "
                   "AND kind = 'redeem'", c["code"])
    assert len(got) == len(accepted) == len({g[0] for g in got})
    assert {g[0] for g in got} == accepted


@pytest.mark.daemon_args("--max_backlog=20", "--pg_conninfo=host=127.0.0.1 port=1 dbname=x",
                         no_wait=True)
def test_backlog_limit(stack):
    redis, d, api, db = stack
    wait_for(lambda: requests.get(d.url + "/readyz", timeout=5).json()["checks"]["redis"] == "ok",
             what="redis ready")
    # the limit applies to a counted backlog (while it is unknown, uses go on): the shipper's
    # first count takes longer on a cluster (a connection per primary, the groups created)
    wait_for(lambda: requests.get(d.url + "/readyz", timeout=5).json()["ledger"]["backlog"]
             is not None, what="the backlog counted")
    c = api.create()
    accepted = set()

    def use(i):
        r = api.redeem(c["code"], user=f"b{i}", key=f"b{i}")
        if r.status_code == 201:
            accepted.add(r.json()["id"])
        else:
            assert r.status_code == 503 and r.json()["error"]["code"] == "unavailable"
            assert "ledger" in r.json()["error"]["message"]
        return r.status_code
    # past the limit: what the last count said decides (it runs every 500 ms), so a few
    # more than 20 may get through before a count sees them
    for i in range(25):
        use(i)
    assert len(accepted) >= 20
    # once a count has seen them, every use is refused (the test used to hope that one
    # count fell inside its 40 requests' second)
    wait_for(lambda: (requests.get(d.url + "/readyz", timeout=5).json()["ledger"]["backlog"]
                      or 0) > 20, what="a count over the limit")
    assert [use(i) for i in range(25, 35)] == [503] * 10
    assert 20 <= len(accepted) <= 25
    # nothing else that writes to the outbox gets through either: a validate of an unknown
    # code (a ledger row, the fraud signal), admin writes (audit rows), shares
    before = outbox_len(redis.client())
    for r in (api.validate("NO-SUCH-CODE"), api.create_raw(), api.post(
            f"/v1/coupons/{c['code']}/disable"), api.post(f"/v1/coupons/{c['code']}/share")):
        assert r.status_code == 503 and "ledger" in r.json()["error"]["message"], r.text
    assert outbox_len(redis.client()) == before
    j = requests.get(d.url + "/readyz", timeout=5)
    assert j.status_code == 503 and j.json()["checks"]["outbox"] == "backlog_over_limit"
    # a daemon that can reach PostgreSQL drains it; nothing accepted is missing
    d.stop()
    d.extra = [a for a in d.extra if not a.startswith(("--pg_conninfo", "--max_backlog"))]
    d.start()
    drained(d)
    got = rows(db, "SELECT txn_id FROM transactions WHERE code = %s AND outcome = 'accepted' "
                   "AND kind = 'redeem'", c["code"])
    assert {g[0] for g in got} == accepted
    assert api.redeem(c["code"], user="after").status_code == 201


@pytest.mark.daemon_args("--ship_pause_after_commit_ms=3000")
def test_redelivery_changes_nothing(stack):
    redis, d, api, db = stack
    c = api.create()
    ids = {api.redeem(c["code"], user=f"r{i}").json()["id"] for i in range(25)}
    wait_for(lambda: "action=pause_before_xack" in d.log(), what="committed batch")
    shipped_before = requests.get(d.url + "/readyz", timeout=5).json()["shipped_rows"]
    r = redis.client()
    for b in {i.split("_")[1] for i in ids}:
        key = f"{{{b}}}:log"
        assert r.xlen(key) > 0  # committed, not yet acknowledged or trimmed
        r.xgroup_setid(key, "pgsink", "0")  # the whole stream is delivered again
    wait_for(lambda: requests.get(d.url + "/readyz", timeout=5).json()["shipped_rows"] >
             shipped_before + 25, timeout=30, what="re-delivery shipped")
    drained(d)
    got = rows(db, "SELECT txn_id FROM transactions WHERE code = %s AND kind = 'redeem'",
               c["code"])
    assert sorted(g[0] for g in got) == sorted(ids)


def test_fraud_role_reads_only(pg, daemon, api):
    api.create()
    pg.psql("DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'analyst') "
            "THEN CREATE ROLE analyst LOGIN IN ROLE redeemd_fraud; END IF; END $$")
    c = pgconn(pg.conninfo, "analyst")
    with c.cursor() as cur:
        for rel in ["transactions", "coupons", "coupon_rows", "batches", "audit_log",
                    "user_attempts_hourly",
                    "ip_failures_hourly", "coupon_redemptions_hourly",
                    "rejection_reasons_hourly", "coupon_usage", "usage_hourly",
                    "usage_hourly_all", "coupon_groups",
                    "rd_user_attempts(now() - interval '1 day', now())",
                    "rd_ip_failures(now() - interval '1 day', now())"]:
            cur.execute(f"SELECT count(*) FROM {rel}")
        for sql in ["INSERT INTO transactions (txn_id, ts, kind, outcome, stream_id) VALUES "
                    "('x', now(), 'redeem', 'accepted', 's')",
                    "UPDATE transactions SET reason = 'x'", "DELETE FROM audit_log",
                    "UPDATE coupon_rows SET kind = 'x'", "DELETE FROM batches", "TRUNCATE transactions",
                    "CREATE TABLE evil (a int)"]:
            with pytest.raises(psycopg2.Error) as e:
                cur.execute(sql)
            assert e.value.pgcode == "42501", (sql, e.value.pgcode)  # insufficient_privilege
    c.close()


def test_partitions_for_any_month(daemon, api, pg):
    c = api.create(limits={"per_user_daily": 5})
    r = api.redeem(c["code"], now="2031-07-04T12:00:00Z")
    assert r.status_code == 201
    drained(daemon)
    got = rows(pg.conninfo, "SELECT tableoid::regclass::text FROM transactions WHERE txn_id = %s",
               r.json()["id"])
    assert got[0][0] == "transactions_203107"


@pytest.mark.single_redis  # appends to a stream through a plain client on one port
def test_bad_entries_are_dead_lettered_and_the_rest_ships(stack):
    """Entries that PostgreSQL refuses for their data (here invalid UTF-8 in a text column,
    and an audit entry whose 'before' is not JSON) go to the dead-letter stream with the
    error; every other entry of their batches is shipped. The shipper used to retry such a
    batch for ever, and the whole ledger stopped behind one entry."""
    redis, d, api, db = stack
    c = api.create()
    ids = [api.redeem(c["code"], user=f"g{i}").json()["id"] for i in range(5)]
    raw = redis_lib.Redis(host="127.0.0.1", port=redis.port)
    now = str(int(time.time() * 1000)).encode()
    stream = b"{0007}:log"
    base = {b"ts": now, b"outcome": b"rejected", b"reason": b"coupon_not_found",
            b"code": b"NOPE"}
    raw.xadd(stream, dict(base, id=b"t_0007_bad_utf8", kind=b"validate", user=b"\xff\xfe"))
    raw.xadd(stream, dict(base, id=b"t_0007_good", kind=b"validate", user=b"fine"))
    raw.xadd(stream, {b"id": b"t_0007_bad_json", b"ts": now, b"kind": b"coupon_update",
                      b"outcome": b"accepted", b"code": b"NOPE", b"before": b"{not json",
                      b"after": b"{}"})
    ids += [api.redeem(c["code"], user=f"h{i}").json()["id"] for i in range(5)]
    drained(d)
    got = {g[0] for g in rows(db, "SELECT txn_id FROM transactions")}
    assert set(ids) <= got and "t_0007_good" in got
    assert not {"t_0007_bad_utf8", "t_0007_bad_json"} & got
    dead = {e[1][b"source_id"]: e[1] for e in raw.xrange(b"{0007}:dead")}
    assert len(dead) == 2, dead
    errors = sorted(e[b"sqlstate"] for e in dead.values())
    assert errors == [b"22021", b"22P02"], dead
    assert all(e[b"error"] and e[b"row"] for e in dead.values())
    m = requests.get(d.url + "/metrics", timeout=5).text
    assert "redeemd_shipper_dead_letters_total 2" in m


ENTRY_FIELDS = (b"tag ts kind outcome reason code campaign user order amount currency dtype "
                b"dvalue dmax min_order day week left paid balance ip key req idem cx").split()


@pytest.mark.single_redis  # rewrites an entry through a plain client on one port
@pytest.mark.daemon_args("--shipper=false")  # the entries wait in Redis
def test_entries_written_a_field_per_value_still_read_and_ship(stack):
    """A use's entry is one packed field now; the ones an earlier redeemd wrote (a field per
    value) may still wait in the streams at the upgrade: they are read, reversed and
    shipped as before, into the same ledger row."""
    redis, d, api, db = stack
    c = api.create(discount={"type": "percent", "value": 1000}, limits={"per_user": 5},
                   campaign="spring")
    new = api.redeem(c["code"], user="p1", amount=2599, order_id="o-1").json()["id"]
    bucket, sid, tag = new[4:8], new[9:new.rindex("_")], new[new.rindex("_") + 1:]
    raw = redis_lib.Redis(host="127.0.0.1", port=redis.port)
    stream = f"{{{bucket}}}:log".encode()
    (_, f), = raw.xrange(stream, sid, sid)
    assert list(f) == [b"u"]  # packed: one field
    values = f[b"u"].split(b"\0")
    assert len(values) == len(ENTRY_FIELDS) and values[0] == tag.encode()
    old_sid = raw.xadd(stream, dict(zip(ENTRY_FIELDS, values))).decode()
    old = f"rdm_{bucket}_{old_sid}_{tag}"

    a, b = api.get(f"/v1/redemptions/{new}"), api.get(f"/v1/redemptions/{old}")
    assert a.status_code == b.status_code == 200, b.text
    a, b = a.json(), b.json()
    assert b.pop("id") == old and a.pop("id") == new
    assert a == b and a["discount"] == 259 and a["order_id"] == "o-1", a
    r = api.post(f"/v1/redemptions/{old}/reverse")
    assert r.status_code in (200, 201), r.text

    d.stop()
    d.extra.remove("--shipper=false")
    d.start()
    drained(d)
    cols = ("kind, outcome, code, campaign, user_id, order_id, order_amount, discount_amount, "
            "currency, client_ip, api_key_id, request_id, day_index, week_index, details")
    got = {g[0]: g[1:] for g in rows(db, f"SELECT txn_id, {cols} FROM transactions "
                                         "WHERE kind = 'redeem'")}
    assert set(got) == {new, old}
    assert got[new] == got[old]
    assert got[new][7] == 259
    assert len(rows(db, "SELECT 1 FROM transactions WHERE kind = 'reverse' AND ref_id = %s",
                    old)) == 1
