"""Exactness under real concurrency: many connections released at once, counts checked after.

Each worker thread has its own HTTP connection; a barrier releases them together so the
requests overlap inside redeemd and Redis."""
import threading
from concurrent.futures import ThreadPoolExecutor

from conftest import Api


def burst(daemon, key, n, make_call):
    """Runs make_call(api, i) on n threads with their own connections, released at once."""
    barrier = threading.Barrier(n)
    apis = [Api(daemon.url, key) for _ in range(n)]
    for a in apis:  # open every connection before the start line
        assert a.get("/healthz").status_code == 200

    def run(i):
        barrier.wait()
        return make_call(apis[i], i)

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(run, range(n)))


def counters(rds, code):
    keys = [k for k in rds.scan_iter(match=f"*:c:{code}")]
    assert len(keys) == 1
    users = rds.hgetall(keys[0].replace(":c:", ":u:"))
    return int(rds.hget(keys[0], "used")), users


def test_global_limit_exact(daemon, keys, api, rds):
    c = api.create(limits={"total": 50})
    rs = burst(daemon, keys["redeem"], 200, lambda a, i: a.redeem(c["code"], user=f"u{i}"))
    codes = sorted(r.status_code for r in rs)
    assert codes.count(201) == 50 and codes.count(422) == 150, codes
    assert all(r.json()["error"]["code"] == "limit_total_reached" for r in rs
               if r.status_code == 422)
    used, users = counters(rds, c["code"])
    assert used == 50
    assert sum(int(v.split(":")[0]) for k, v in users.items() if k.startswith("u:")) == 50
    ids = {r.json()["id"] for r in rs if r.status_code == 201}
    assert len(ids) == 50


def test_per_user_limit_exact(daemon, keys, api, rds):
    c = api.create(limits={"per_user": 3})
    rs = burst(daemon, keys["redeem"], 100, lambda a, i: a.redeem(c["code"], user="same"))
    ok = [r for r in rs if r.status_code == 201]
    assert len(ok) == 3
    assert all(r.json()["error"]["code"] == "limit_user_reached" for r in rs
               if r.status_code != 201)
    used, users = counters(rds, c["code"])
    assert used == 3 and users["u:same"].split(":")[0] == "3"


def test_daily_and_weekly_exact(daemon, keys, api, rds):
    c = api.create(limits={"per_user_daily": 2, "per_user_weekly": 4})
    day = "2030-03-05T12:00:00Z"
    rs = burst(daemon, keys["redeem"], 60, lambda a, i: a.redeem(c["code"], user="d", now=day))
    assert sum(r.status_code == 201 for r in rs) == 2
    rs = burst(daemon, keys["redeem"], 60,
               lambda a, i: a.redeem(c["code"], user="d", now="2030-03-06T12:00:00Z"))
    assert sum(r.status_code == 201 for r in rs) == 2
    rs = burst(daemon, keys["redeem"], 60,
               lambda a, i: a.redeem(c["code"], user="d", now="2030-03-07T12:00:00Z"))
    assert sum(r.status_code == 201 for r in rs) == 0  # the week is full
    assert counters(rds, c["code"])[0] == 4


def test_one_idempotency_key_one_redemption(daemon, keys, api, rds):
    c = api.create(limits={"total": 10})
    rs = burst(daemon, keys["redeem"], 50,
               lambda a, i: a.redeem(c["code"], user="idem", key="one-key-for-all"))
    assert all(r.status_code == 201 for r in rs)
    bodies = {r.content for r in rs}
    assert len(bodies) == 1, bodies
    assert sum(r.headers.get("Idempotent-Replayed") == "true" for r in rs) == 49
    assert counters(rds, c["code"])[0] == 1


def test_reversals_racing_redemptions(daemon, keys, api, rds):
    c = api.create(limits={"total": 20})
    first = [api.redeem(c["code"], user=f"r{i}").json()["id"] for i in range(20)]

    def call(a, i):
        if i < 20:
            return a.post(f"/v1/redemptions/{first[i]}/reverse")
        return a.redeem(c["code"], user=f"n{i}")

    rs = burst(daemon, keys["redeem"], 80, call)
    reversed_ok = sum(r.status_code == 200 for r in rs[:20])
    redeemed = sum(r.status_code == 201 for r in rs[20:])
    assert reversed_ok == 20
    used, _ = counters(rds, c["code"])
    assert used == 20 - reversed_ok + redeemed
    assert used <= 20 and redeemed <= 20
