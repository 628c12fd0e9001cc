"""GET /v1/transactions (scope fraud) and the ledger fallback of GET /v1/redemptions/{id}."""
import csv
import io

import psycopg2
import pytest
import requests

from conftest import SANITIZED, Api, key_loaded, make_key, migrate, wait_for
from test_ledger import drained

NOW = "2030-06-03T10:00:00Z"


@pytest.fixture()
def ledger(stack):
    """The shared stack plus a fraud-only client and single-scope keys."""
    redis, d, api, db = stack
    keys = {s: make_key(redis.port, s) for s in ("fraud", "redeem", "admin")}
    fraud = Api(d.url, keys["fraud"])
    wait_for(lambda: all(key_loaded(d.url, k, ok=(403, 404)) for k in keys.values()),
             what="keys loaded")
    return redis, d, api, fraud, keys, db


def sql(conninfo, stmt, *args):
    c = psycopg2.connect(conninfo)
    c.autocommit = True
    try:
        with c.cursor() as cur:
            cur.execute(stmt, args)
            return cur.fetchall() if cur.description else None
    finally:
        c.close()


def all_pages(fraud, query="", limit=7, during=None):
    seen, cursor, pages = [], None, 0
    while True:
        q = f"/v1/transactions?limit={limit}{query}" + (f"&cursor={cursor}" if cursor else "")
        r = fraud.get(q)
        assert r.status_code == 200, r.text
        body = r.json()
        seen += body["data"]
        pages += 1
        if during and pages == 2:
            during()
        if not body["has_more"]:
            assert body["next_cursor"] is None
            return seen
        cursor = body["next_cursor"]


def test_filters_and_scopes(ledger):
    redis, d, api, fraud, keys, db = ledger
    a = api.create(limits={"per_user": 1})
    b = api.create()
    ok = api.redeem(a["code"], user="alice", now=NOW).json()
    api.redeem(a["code"], user="alice", now=NOW)  # limit_user_reached
    api.redeem(b["code"], user="bob", now="2030-06-04T10:00:00Z")
    api.post(f"/v1/redemptions/{ok['id']}/reverse")
    drained(d)
    rows = all_pages(fraud)
    assert {r["kind"] for r in rows} >= {"redeem", "reverse", "coupon_create"}
    by = lambda q: all_pages(fraud, q)  # noqa: E731
    assert {r["code"] for r in by(f"&code={a['code'].lower()}")} == {a["code"]}
    assert {r["user_id"] for r in by("&user_id=alice")} == {"alice"}
    assert len(by("&kind=redeem&outcome=rejected")) == 1
    rej = by("&reason=limit_user_reached")
    assert len(rej) == 1 and rej[0]["user_id"] == "alice" and rej[0]["discount_amount"] is None
    acc = by(f"&kind=redeem&outcome=accepted&code={a['code']}")
    assert acc[0]["txn_id"] == ok["id"] and acc[0]["discount_amount"] == ok["discount"]
    assert acc[0]["ts"] == NOW and acc[0]["client_ip"] == "127.0.0.1"
    assert len(by("&client_ip=127.0.0.1&kind=redeem")) == 3
    assert len(by("&client_ip=127.0.0.0/8&kind=redeem")) == 3
    assert len(by("&client_ip=10.0.0.0/8")) == 0
    assert len(by("&kind=redeem&from=2030-06-04T00:00:00Z")) == 1
    assert len(by("&kind=redeem&to=2030-06-04T00:00:00Z")) == 2
    for q, field in [("nope=1", "nope"), ("limit=0", "limit"), ("limit=1001", "limit"),
                     ("kind=steal", "kind"), ("outcome=maybe", "outcome"),
                     ("client_ip=1.2.3", "client_ip"), ("client_ip=1.2.3.4/33", "client_ip"),
                     ("from=yesterday", "from"), ("cursor=abc", "cursor"),
                     # a cursor names its listing's order: (txid, ts, txn_id), or (txid, txn_id)
                     # for a filter with its own page index and no window
                     ("cursor=12.abc", "cursor"), ("code=SAVE10&cursor=12.5.abc", "cursor"),
                     ("from=2030-06-01T00:00:00Z&cursor=12.abc", "cursor"),
                     ("from=2030-06-01T00:00:00Z&cursor=12.x.abc", "cursor"),
                     ("from=2030-06-01T00:00:00Z&cursor=12.123456789012345678.abc", "cursor"),
                     ("from=2030-06-01T00:00:00Z&cursor=12..abc", "cursor"),
                     ("reason=bogus", "reason"), ("code=a%20b", "code")]:
        r = fraud.get(f"/v1/transactions?{q}")
        assert r.status_code == 400 and r.json()["error"]["details"]["field"] == field, q
    for k in ("redeem", "admin"):
        assert Api(d.url, keys[k]).get("/v1/transactions").status_code == 403
    assert requests.get(d.url + "/v1/transactions", timeout=5).status_code == 401


def test_pagination_while_rows_arrive(ledger):
    redis, d, api, fraud, keys, db = ledger
    c = api.create()
    for i in range(20):
        api.redeem(c["code"], user=f"p{i}")
    drained(d)
    before = {r["txn_id"] for r in all_pages(fraud, limit=50)}

    def more():  # new rows land while the client is paging
        for i in range(15):
            api.redeem(c["code"], user=f"late{i}")
        drained(d)

    seen = all_pages(fraud, limit=4, during=more)
    ids = [r["txn_id"] for r in seen]
    assert len(ids) == len(set(ids)), "a row was repeated"
    assert before <= set(ids), "a row was skipped"
    # a final walk sees exactly everything, once
    final = [r["txn_id"] for r in all_pages(fraud, limit=9)]
    assert len(final) == len(set(final)) == len(before) + 15


def test_csv_quoting_and_resume(ledger):
    redis, d, api, fraud, keys, db = ledger
    c = api.create()
    api.redeem(c["code"], user='quote"d,comma', order_id="o,1")
    drained(d)
    # no API input may hold a line break; a row written by another tool can
    sql(db, "INSERT INTO transactions (txn_id, ts, kind, outcome, user_id, stream_id) "
            "VALUES ('manual_1', now(), 'redeem', 'rejected', E'line\\nbreak\\r\\n\"x\"', 'm')")
    r = fraud.get("/v1/transactions?user_id=x", headers={"Accept": "text/csv"})
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/csv")
    assert r.text.splitlines()[0].startswith("txn_id,ts,kind,outcome")
    r = fraud.get("/v1/transactions", headers={"Accept": "text/csv"})
    rows = list(csv.DictReader(io.StringIO(r.text, newline="")))
    users = {row["user_id"] for row in rows}
    assert 'quote"d,comma' in users and 'line\nbreak\r\n"x"' in users
    assert any(row["order_id"] == "o,1" for row in rows)
    assert '"quote""d,comma"' in r.text
    # the cursor column resumes an export after any row
    mid = rows[len(rows) // 2]["cursor"]
    rest = list(csv.DictReader(io.StringIO(fraud.get(
        f"/v1/transactions?cursor={mid}", headers={"Accept": "text/csv"}).text, newline="")))
    assert [x["txn_id"] for x in rest] == [x["txn_id"] for x in rows[len(rows) // 2 + 1:]]


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def test_large_export_streams_in_constant_memory(ledger):
    redis, d, api, fraud, keys, db = ledger
    n = 300000
    for month in ("2030-01-01", "2030-02-01", "2030-03-01", "2030-04-01"):
        sql(db, "SELECT rd_ensure_partition(%s::timestamptz)", month)
    sql(db, "INSERT INTO transactions (txn_id, ts, kind, outcome, code, user_id, order_amount, "
            "stream_id) SELECT 'bulk_' || i, timestamptz '2030-01-01' + i * interval '1 second', "
            "'redeem', 'accepted', 'BULK', 'user' || (i %% 977), i, 's' FROM "
            "generate_series(1, %s) i", n)
    start = rss_kb(d.proc.pid)
    peak = start
    lines = 0
    with requests.get(d.url + "/v1/transactions?code=BULK", stream=True, timeout=120,
                      headers={"Authorization": f"Bearer {fraud.key}",
                               "Accept": "text/csv"}) as r:
        assert r.status_code == 200
        for chunk in r.iter_content(chunk_size=65536):
            lines += chunk.count(b"\n")
            peak = max(peak, rss_kb(d.proc.pid))
    assert lines == n + 1
    # The export is ~25 MB; the daemon must not hold it. Under ASan, RSS follows the
    # allocator's quarantine of freed memory (256 MB), not live memory, so the bound is
    # checked on the uninstrumented build only.
    if not SANITIZED:
        assert peak - start < 20 * 1024, (start, peak)
    # a client that walks away mid-export ends the query, and the daemon carries on
    with requests.get(d.url + "/v1/transactions?code=BULK", stream=True, timeout=60,
                      headers={"Authorization": f"Bearer {fraud.key}",
                               "Accept": "text/csv"}) as r:
        next(r.iter_content(chunk_size=1024))
    wait_for(lambda: "event=read_abandoned" in d.log(), timeout=30, what="export abandoned")
    assert fraud.get("/v1/transactions?limit=1").status_code == 200


def test_heavy_query_does_not_stall_redemptions(ledger):
    """An export held open mid-stream (its query paused by a client that reads nothing more)
    occupies the same worker loops that answer redemptions; redemptions still go through,
    and the export completes afterwards."""
    redis, d, api, fraud, keys, db = ledger
    sql(db, "INSERT INTO transactions (txn_id, ts, kind, outcome, code, stream_id) SELECT "
            "'slow_' || i, now(), 'redeem', 'accepted', 'SLOW', 's' FROM generate_series(1, 50000) i")
    c = api.create()
    with requests.get(d.url + "/v1/transactions?code=SLOW", stream=True, timeout=60,
                      headers={"Authorization": f"Bearer {fraud.key}",
                               "Accept": "text/csv"}) as export:
        body = export.raw.read(1024)  # the export is under way...
        assert body.startswith(b"txn_id,")
        for i in range(30):  # ...and redemptions are answered meanwhile
            assert api.redeem(c["code"], user=f"h{i}").status_code == 201
        rest = export.raw.read()
    assert (body + rest).count(b"\n") == 50001


def test_redemption_from_ledger_once_shipped(ledger):
    redis, d, api, fraud, keys, db = ledger
    c = api.create()
    kept = api.redeem(c["code"], user="old", now=NOW, order_id="o-77").json()
    gone = api.redeem(c["code"], user="old2", now=NOW).json()
    rev = api.post(f"/v1/redemptions/{gone['id']}/reverse", headers={"X-Redeemd-Now": NOW})
    assert rev.status_code == 200, rev.text
    drained(d)
    g = api.get(f"/v1/redemptions/{kept['id']}").json()
    assert g["source"] == "ledger" and g["status"] == "active" and g["order_id"] == "o-77"
    assert g["discount"] == kept["discount"] and g["created_at"] == NOW
    g = api.get(f"/v1/redemptions/{gone['id']}").json()
    assert g["status"] == "reversed" and g["reversal_id"].startswith("rdm_")
    r404 = api.get("/v1/redemptions/rdm_0001_aaaaaaaaaaaaaaaaaaaa")
    assert r404.status_code == 404 and r404.json()["error"]["code"] == "redemption_not_found"


def test_any_of_pages_in_page_order(ledger):
    """Several values of a filter are read as one ordered arm per value, merged: paging such
    a filter yields exactly the rows, in the order, of the same filter unsplit (an export)
    and of the whole ledger filtered by hand, across cursors and with other filters."""
    redis, d, api, fraud, keys, db = ledger
    a, b, other = (api.create()["code"] for _ in range(3))
    for i in range(9):
        for code in (a, b, other) if i % 2 else (b, other):
            api.redeem(code, user=f"ao{i % 4}")
        if i % 3 == 0:
            drained(d)  # rows of several shipping transactions, interleaved
    drained(d)
    # the ledger in the order a filter with its own page index walks without a window
    every = [dict(zip(("txn_id", "code", "user_id", "client_ip", "kind"), r)) for r in
             sql(db, "SELECT txn_id, code, user_id, host(client_ip), kind FROM transactions "
                     "ORDER BY txid, txn_id")]
    assert sorted(t["txn_id"] for t in all_pages(fraud, limit=1000)) == \
        sorted(t["txn_id"] for t in every)
    for query, keep in [
            (f"&code={a}&code={b}", lambda t: t["code"] in (a, b)),
            (f"&code={b}&code={a}&code=NOPE-1", lambda t: t["code"] in (a, b)),
            ("&user_id=ao1&user_id=ao3&kind=redeem",
             lambda t: t["user_id"] in ("ao1", "ao3") and t["kind"] == "redeem"),
            (f"&user_id=ao0&user_id=ao2&code={b}",
             lambda t: t["user_id"] in ("ao0", "ao2") and t["code"] == b),
            ("&client_ip=127.0.0.1&client_ip=10.0.0.0/8", lambda t: t["client_ip"] is not None),
            ("&kind=redeem&kind=reverse", lambda t: t["kind"] in ("redeem", "reverse"))]:
        want = [t["txn_id"] for t in every if keep(t)]
        assert want, query
        for limit in (1, 2, 5, 100):
            assert [t["txn_id"] for t in all_pages(fraud, query, limit=limit)] == want, \
                (query, limit)
        r = fraud.get(f"/v1/transactions?{query[1:]}", headers={"Accept": "text/csv"})
        assert r.status_code == 200
        ids = [row["txn_id"] for row in csv.DictReader(io.StringIO(r.text))]
        assert ids == want, query


def test_time_windows_find_every_row_also_shipped_late(ledger):
    """from/to pages walk only the shipping transactions whose rows reach into the window
    (ledger_batches, 013), each from the window's start, in (txid, ts, txn_id) order (014).
    Rows with an old time shipped after newer ones (an outage's backlog) are found too; every
    window equals the ledger filtered by hand, across cursors that fall inside a shipping
    transaction whose rows' times run against their ids."""
    redis, d, api, fraud, keys, db = ledger
    c = api.create(limits={"per_user": 100})["code"]
    for when, n in (("2030-06-10T10:00:0%dZ", 3), ("2030-06-01T10:00:0%dZ", 3),  # shipped late
                    ("2030-06-20T10:00:0%dZ", 2), ("2030-06-10T12:00:0%dZ", 1)):
        for i in range(n):  # seconds running backwards, so ts order is not txn_id order
            assert api.redeem(c, user=f"w{i}", now=when % (n - i)).status_code == 201
        drained(d)  # each group in its own shipping transactions
    windows = [("2030-06-01T00:00:00Z", None), ("2030-06-05T00:00:00Z", None),
               ("2030-06-01T00:00:00Z", "2030-06-05T00:00:00Z"),
               ("2030-06-10T11:00:00Z", "2030-06-15T00:00:00Z"),
               ("2030-06-21T00:00:00Z", None), ("2030-05-01T00:00:00Z", "2030-05-02T00:00:00Z"),
               ("2030-06-10T10:00:01Z", "2030-06-10T10:00:01.001Z"),
               ("2030-06-10T10:00:02Z", "2030-06-10T12:00:00Z")]

    def check():
        for frm, to in windows:
            want = [r[0] for r in sql(db, "SELECT txn_id FROM transactions WHERE code = %s AND "
                                          "ts >= %s AND ts < coalesce(%s::timestamptz, 'infinity') "
                                          "ORDER BY txid, ts, txn_id", c, frm, to)]
            q = f"&code={c}&from={frm}" + (f"&to={to}" if to else "")
            for limit in (1, 2, 50):
                assert [t["txn_id"] for t in all_pages(fraud, q, limit=limit)] == want, (q, limit)
            # and without the code filter, the walk of the page index itself
            q = f"&from={frm}" + (f"&to={to}" if to else "")
            got = [t["txn_id"] for t in all_pages(fraud, q, limit=50) if t["code"] == c]
            assert got == want, q
    check()
    # an install upgraded to 013: its batches recorded by the migration, the same pages
    want = sql(db, "SELECT txid::text, min(ts), max(ts), count(*) FROM transactions "
                   "GROUP BY txid ORDER BY txid")
    assert sql(db, "SELECT txid::text, min_ts, max_ts, n FROM ledger_batches ORDER BY txid") == \
        want
    d.stop()
    sql(db, "DELETE FROM ledger_batches; DELETE FROM schema_migrations WHERE version >= '013'")
    migrate(db)
    d.start()
    assert sql(db, "SELECT txid::text, min_ts, max_ts, n FROM ledger_batches ORDER BY txid") == \
        want
    check()
