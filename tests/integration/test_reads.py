"""Ledger reads cannot stall each other or the daemon: heavy reads (stats, listings, exports)
never hold every PostgreSQL connection, every read has a time limit and a queue deadline,
and a read whose client leaves is cancelled in PostgreSQL. Slow queries are made with the
test-only X-Redeemd-Test-Pg-Sleep-Ms header (honoured with --test_clock): the connection is
held in pg_sleep first, as by a slow query, under the same limits."""
import threading
import time

import psycopg2
import pytest
import requests

from conftest import Api, Daemon, key_loaded, make_key, wait_for


def slow(ms):
    return {"X-Redeemd-Test-Pg-Sleep-Ms": str(ms)}


def backends(conninfo, pattern="pg_sleep"):
    """Active statements of redeemd's read connections matching pattern."""
    c = psycopg2.connect(conninfo)
    c.autocommit = True
    try:
        with c.cursor() as cur:
            cur.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                        "'redeemd-read' AND state = 'active' AND query LIKE %s",
                        (f"%{pattern}%",))
            return cur.fetchone()[0]
    finally:
        c.close()


@pytest.fixture()
def reader(workdir, redis_srv, pg, request):
    """One worker (one pool of 3 connections), an admin+fraud key; extra flags from the
    test's parametrisation."""
    extra = getattr(request, "param", ())
    d = Daemon(workdir, redis_srv.port, pg.conninfo, "--workers=1", "--pg_read_conns=3",
               *extra).start()
    api = Api(d.url, make_key(redis_srv.port, "admin,fraud,redeem"))
    wait_for(lambda: key_loaded(api.base, api.key), what="key loaded")
    yield d, api
    d.stop()


def test_heavy_reads_leave_a_lane_for_small_ones(reader):
    """Six stats reads taking 3 s each, on a pool of three connections: two run at a time
    (the heavy lane), the third connection answers ledger pages meanwhile, and the heavy
    reads that found no connection within read_queue_ms (2 s) answer 503."""
    d, api = reader
    done = []

    def heavy():
        r = Api(d.url, api.key).get("/v1/stats", headers=slow(3000))
        done.append(r.status_code)
    threads = [threading.Thread(target=heavy) for _ in range(6)]
    for t in threads:
        t.start()
    wait_for(lambda: backends(d.pg_conninfo) == 2, what="the heavy lane full")
    for _ in range(10):
        assert api.get("/v1/transactions?limit=5").status_code == 200
    assert 200 not in done and backends(d.pg_conninfo) == 2  # the heavy ones still running
    for t in threads:
        t.join(timeout=60)
    assert sorted(done) == [200, 200, 503, 503, 503, 503], done


@pytest.mark.parametrize("reader", [("--read_queue_ms=300",)], indirect=True)
def test_queue_deadline(reader):
    """A read that cannot get a connection within read_queue_ms answers 503 with
    Retry-After, instead of waiting behind the others."""
    d, api = reader
    out = []
    threads = [threading.Thread(target=lambda: out.append(
        Api(d.url, api.key).get("/v1/stats", headers=slow(2000)))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    refused = [r for r in out if r.status_code == 503]
    assert len(refused) == 1 and sum(r.status_code == 200 for r in out) == 2, out
    err = refused[0].json()["error"]
    assert err["details"]["reason"] == "read_queue_full" and refused[0].headers["Retry-After"]
    m = api.get("/metrics").text
    assert "redeemd_pg_read_queue_timeouts_total 1" in m


@pytest.mark.parametrize("reader", [("--read_timeout_ms=500", "--query_timeout_ms=1500")],
                         indirect=True)
def test_time_limits_per_class(reader):
    """Interactive reads stop at read_timeout_ms, exports at query_timeout_ms; both answer
    503 naming the limit, and the connection serves the next read."""
    d, api = reader
    r = api.get("/v1/stats", headers=slow(1000))
    assert r.status_code == 503, r.text
    assert r.json()["error"]["details"] == {"reason": "read_timeout", "limit_ms": 500}
    # an export gets its own, longer limit: 1 s of sleep is within it
    r = api.get("/v1/transactions", headers=dict(slow(1000), Accept="text/csv"))
    assert r.status_code == 200 and r.text.startswith("txn_id,"), r.text
    r = api.get("/v1/transactions", headers=dict(slow(2500), Accept="text/csv"))
    assert r.status_code == 503 and r.json()["error"]["details"]["limit_ms"] == 1500
    assert api.get("/v1/stats").status_code == 200
    assert "redeemd_pg_read_statement_timeouts_total 2" in api.get("/metrics").text


def test_client_gone_cancels_the_query(reader):
    """A client that disconnects mid-read leaves no statement running in PostgreSQL: the read
    is cancelled there within moments (it used to run on for minutes, holding a pool
    connection), and its connection serves the next read."""
    d, api = reader
    for path, headers in (("/v1/stats", {}), ("/v1/transactions", {"Accept": "text/csv"}),
                          ("/v1/coupons?limit=5", {})):
        try:
            requests.get(d.url + path, timeout=0.5, headers=dict(
                slow(60000), Authorization=f"Bearer {api.key}", **headers))
        except requests.exceptions.Timeout:
            pass  # the client gives up and closes its connection
        else:
            pytest.fail("the read should still have been running")
        wait_for(lambda: backends(d.pg_conninfo) == 0, timeout=5,
                 what=f"{path}: the cancelled statement gone from pg_stat_activity")
    assert "event=read_abandoned" in d.log()
    m = api.get("/metrics").text
    assert "redeemd_pg_read_cancelled_total 3" in m
    assert api.get("/v1/stats").status_code == 200
