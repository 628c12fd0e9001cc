"""Restarts and outages: redeemd restarted and Redis restarted with its AOF in the middle of a
test keep every count; while Redis is down requests fail fast with 503, never hang, never 500;
the daemon reconnects by itself."""
import re
import threading
import time

import pytest
import requests

from conftest import Api, metric, outbox_len, start_load, wait_for


def used(api, code):
    return api.get(f"/v1/coupons/{code}").json()["used"]["total"]


def test_daemon_restart_keeps_counts(stack):
    redis, d, api, _ = stack
    c = api.create(limits={"total": 5, "per_user": 2})
    for i in range(3):
        assert api.redeem(c["code"], user=f"u{i % 2}").status_code == 201
    d.stop()
    d.start()
    api.s = requests.Session()
    assert used(api, c["code"]) == 3
    assert api.redeem(c["code"], user="u0").json()["error"]["code"] == "limit_user_reached"
    assert api.redeem(c["code"], user="u9").status_code == 201
    assert api.redeem(c["code"], user="u8").status_code == 201
    assert api.redeem(c["code"], user="u7").json()["error"]["code"] == "limit_total_reached"


def test_redis_down_fails_fast_and_recovers(stack):
    redis, d, api, _ = stack
    c = api.create(limits={"total": 100})
    rids = [api.redeem(c["code"], user=f"a{i}").json()["id"] for i in range(10)]
    redis.stop(kill=True)  # no shutdown save: only the AOF (appendfsync always) survives
    statuses = []
    for i in range(20):
        # a request that hung would end in the client's timeout (an exception), not a 503
        r = api.redeem(c["code"], user="down", key=f"down-{i}")
        statuses.append(r.status_code)
        assert r.status_code == 503, r.text
        assert r.json()["error"]["code"] == "unavailable"
        assert r.headers.get("Retry-After")
    assert requests.get(d.url + "/readyz", timeout=5).status_code == 503
    assert requests.get(d.url + "/healthz", timeout=5).status_code == 200
    redis.start()  # same dir and port: the AOF is replayed
    wait_for(lambda: api.redeem(c["code"], user="back", key="back-1").status_code == 201,
             timeout=20, what="redeem after Redis restart")
    assert used(api, c["code"]) == 11
    assert api.get(f"/v1/redemptions/{rids[0]}").json()["status"] == "active"
    # a retry with a key that got 503 before is a fresh attempt now, and succeeds once
    assert api.redeem(c["code"], user="down", key="down-0").status_code == 201
    assert api.redeem(c["code"], user="down", key="down-0").headers["Idempotent-Replayed"] == "true"
    assert used(api, c["code"]) == 12
    assert 500 not in statuses


def test_redis_restart_under_load(stack):
    """Redemptions run on several threads while Redis is killed and restarted: every answer
    is 201, 422 or 503 (never 500, never a hang), and afterwards Redis holds exactly the
    successes the clients saw, with no use counted twice."""
    redis, d, api, _ = stack
    c = api.create(limits={"total": 400, "per_user": 1})
    # each client retries a 503 ("outcome unknown") with the same key until it is answered
    stop, results, lock, threads = start_load(d, api.key, c["code"], 4, "t")
    wait_for(lambda: len(results) >= 20, what="load running")
    redis.stop(kill=True)
    time.sleep(0.5)  # the outage: load meets a Redis that is not there
    redis.start()
    n = len(results)
    wait_for(lambda: len(results) >= n + 20, timeout=30, what="load running after the restart")
    stop.set()
    for t in threads:
        t.join(timeout=90)
    codes = {s for _, s, _ in results}
    assert codes <= {201, 422, 503}, codes
    accepted = [u for u, s, _ in results if s == 201]
    assert len(accepted) == len(set(accepted))
    wait_for(lambda: api.get("/readyz").status_code == 200, what="ready again")
    total = used(api, c["code"])
    # every success the clients saw is counted; an answer lost to the restart (503 at stop)
    # may have been applied without being seen, never the other way round
    unresolved = sum(1 for _, s, _ in results if s == 503)
    assert len(accepted) <= total <= len(accepted) + unresolved


def test_script_flush_is_survived(stack):
    redis, d, api, _ = stack
    c = api.create()
    redis.client().script_flush()
    r = api.redeem(c["code"])
    assert r.status_code == 201, r.text
    assert used(api, c["code"]) == 1
    assert "noscript" in d.log()


def test_function_flush_is_survived(stack):
    """The checkout's scripts (redeem, pay) run as a Redis Function library: a Redis that
    lost it (FUNCTION FLUSH here; on a cluster every primary, and so their replicas) costs a
    reload and a resend, not a failed request."""
    redis, d, api, _ = stack
    from test_vouchers import pay, voucher
    c = api.create()
    v = voucher(api, 1000)
    assert api.redeem(c["code"], user="before").status_code == 201
    def libraries(node):  # FUNCTION LIST: one flat name, value list per library
        return [dict(zip(x[::2], x[1::2]))["library_name"] for x in node.function_list()]
    primaries = [redis.node(p) for p in redis.ports
                 if redis.node(p).info("replication")["role"] == "master"]
    # loaded at connect (a cluster's daemon connects to a primary on first use)
    assert any(n.startswith("redeemd_") for node in primaries for n in libraries(node))
    for node in primaries:
        node.function_flush()
    for p in redis.ports:
        wait_for(lambda: libraries(redis.node(p)) == [], what="flushed, replicas too")
    r = api.redeem(c["code"], user="after")
    assert r.status_code == 201, r.text
    p = pay(api, v["code"], 300)
    assert p.status_code == 201 and p.json()["balance"] == 700, p.text
    assert used(api, c["code"]) == 2
    # the first call after the flush found no function; its reload serves both (one library)
    assert "event=noscript" in d.log() and "script=redeem" in d.log()


def test_sigterm_finishes_and_exits_zero(stack):
    redis, d, api, _ = stack
    c = api.create()
    assert api.redeem(c["code"]).status_code == 201
    d.stop()  # asserts exit status 0 (and no sanitizer report)
    assert "event=stopped" in d.log()


@pytest.mark.single_redis  # restarts the one Redis with a slow load
def test_ledger_catches_up_after_redis_restart_while_loading(stack):
    """Redis killed under load and restarted with an AOF that takes seconds to load (it
    answers LOADING meanwhile): the shipper recovers by itself, the ledger ends with exactly
    one row per accepted attempt, and the backlog /readyz reports is never 0 while entries
    still wait (the shipper used to leave pipelined LOADING replies unread, so every later
    command on its connection read a stale reply: the ledger stopped, the backlog read 0)."""
    from test_ledger import count_mark, counted_after, rows
    redis, d, api, db = stack
    c = api.create()
    # a data set that loads slowly: 30,000 keys in the AOF's RDB base, 100 us each
    r = redis.client()
    p = r.pipeline(transaction=False)
    for i in range(0, 30000, 1000):
        p.mset({f"fill:{j}": "x" for j in range(i, i + 1000)})
    p.execute()
    r.bgrewriteaof()
    wait_for(lambda: r.info("persistence")["aof_rewrite_in_progress"] == 0 and
             r.info("persistence")["aof_rewrite_scheduled"] == 0, what="AOF rewrite")
    stop, results, lock, threads = start_load(d, api.key, c["code"], 3, "l")
    try:
        wait_for(lambda: len(results) >= 30, what="load running")
        redis.stop(kill=True)
        redis.start("--key-load-delay", "100", "--loading-process-events-interval-bytes",
                    "1024", wait=False)
        wait_for(lambda: "Done loading RDB" in redis.log(), timeout=60, what="AOF loaded")
        wait_for(lambda: api.get("/readyz").status_code == 200, timeout=30,
                 what="ready after the restart")
        n = len(results)
        wait_for(lambda: len(results) >= n + 30, what="load running after the restart")
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=90)
    mark = count_mark(d)
    assert {s for _, s, _ in results} <= {201}, {s for _, s, _ in results}
    accepted = {rid for _, _, rid in results}
    r = redis.client()

    def caught_up():
        j = api.get("/readyz").json()
        if not counted_after(j, mark):
            return False
        real = outbox_len(r)
        # nothing is written any more, so the streams only shrink: a count of 0 taken now
        # while entries still wait is a false count
        assert not (j["outbox_backlog"] == 0 and real > 0), (j, real)
        got = rows(db, "SELECT txn_id FROM transactions WHERE code = %s AND kind = 'redeem' "
                       "AND outcome = 'accepted'", c["code"])
        return sorted(g[0] for g in got) == sorted(accepted) and real == 0
    wait_for(caught_up, timeout=90, step=0.2, what="ledger caught up")
    got = rows(db, "SELECT txn_id, count(*) FROM transactions WHERE code = %s GROUP BY 1",
               c["code"])
    assert all(k == 1 for _, k in got)


@pytest.mark.single_redis  # stalls the one Redis (DEBUG SLEEP)
@pytest.mark.daemon_args("--redis_timeout_ms=20000", "--shutdown_timeout_s=1")
def test_sigterm_with_requests_stuck_in_redis(stack):
    """SIGTERM while Redis is paused (CLIENT PAUSE) and redemptions wait on it: the drain
    deadline passes with requests in flight; the daemon answers them 503 (outcome unknown)
    and exits 0, with no sanitizer report (it used to free the connections first, and the
    Redis callbacks then answered freed requests)."""
    redis, d, api, _ = stack
    c = api.create()
    assert api.redeem(c["code"]).status_code == 201
    # (a pause ends by itself: CLIENT UNPAUSE would wait behind it on a new connection)
    redis.client().execute_command("CLIENT", "PAUSE", "8000", "ALL")
    answers = []

    def redeem(i):
        try:
            answers.append(Api(d.url, api.key).redeem(c["code"], user=f"p{i}").status_code)
        except requests.RequestException:
            answers.append(None)
    threads = [threading.Thread(target=redeem, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    def inflight():
        m = requests.get(d.url + "/metrics", timeout=5).text
        return metric(m, "redeemd_inflight_requests") - 1  # not this one
    wait_for(lambda: inflight() == 8, what="8 redemptions waiting on Redis")
    d.stop()  # SIGTERM: asserts exit status 0 and no sanitizer report
    for t in threads:
        t.join(timeout=30)
    # each worker logs what it still held at its deadline
    held = [int(n) for n in re.findall(r"event=shutdown_deadline inflight=(\d+)", d.log())]
    assert sum(held) == 8, d.log()
    assert answers and set(answers) <= {503, None}, answers
