"""Guessing budgets: failed lookups (unknown, archived or disabled code, wrong kind) per
customer address, user, session and API key, GCRA in Redis on the injected clock; 429
rate_limited with Retry-After and the budget named; successes never cost anything; refusals
sampled into the ledger (1st, 2nd, 4th ... of a minute) and counted in /metrics."""
import datetime

import psycopg2
import pytest
import requests

from conftest import Api, make_key, key_loaded, wait_for

T0 = datetime.datetime(2031, 6, 1, 12, 0, 0, tzinfo=datetime.timezone.utc)


def at(seconds):
    return (T0 + datetime.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def sql(db, q, *args):
    with psycopg2.connect(db) as c, c.cursor() as cur:
        cur.execute(q, args)
        return cur.fetchall()


def probe(api, code, t, user="u", customer=None, path="/v1/validate"):
    body = {"code": code, "user_id": user, "order_amount": 100, "currency": "EUR"}
    if customer:
        body["customer"] = customer
    return api.post(path, body, headers={"X-Redeemd-Now": at(t), "Idempotency-Key":
                                         f"{code}-{user}-{t}"})


def key_only(*extra):
    return pytest.mark.daemon_args("--guess_key_per_min=60", "--guess_key_burst=5", *extra)


@key_only()
def test_key_budget_trips_and_recovers(stack):
    redis, d, api, db = stack
    codes = [probe(api, f"NOPE-{i}", 0).status_code for i in range(7)]
    assert codes == [404] * 5 + [429] * 2, codes
    r = probe(api, "NOPE-X", 0)
    assert r.status_code == 429
    err = r.json()["error"]
    assert err["code"] == "rate_limited" and err["details"]["budget"] == "key", r.text
    assert int(r.headers["Retry-After"]) >= 1
    # one failure refills per second (60 a minute): one more at +1 s, then refused again
    assert [probe(api, f"NOPE-A{i}", 1).status_code for i in range(2)] == [404, 429]
    # a minute later the whole burst is back
    assert [probe(api, f"NOPE-B{i}", 70).status_code for i in range(6)] == [404] * 5 + [429]
    m = requests.get(d.url + "/metrics", timeout=5).text
    line = [l for l in m.splitlines() if l.startswith('redeemd_rate_limited_total{budget="key"}')]
    assert line and int(line[0].split()[1]) >= 5, line


@key_only()
def test_successes_cost_nothing_and_a_spent_budget_stops_lookups(stack):
    redis, d, api, db = stack
    api.create(code="GOOD-1", limits={"per_user": 1000})
    for i in range(50):  # honest traffic: never near Redis for a budget
        assert probe(api, "GOOD-1", 0, user=f"h{i}").json()["valid"] is True
        assert probe(api, "GOOD-1", 0, user=f"h{i}", path="/v1/redemptions").status_code == 201
    assert redis.client().keys("*:g:*") == []
    # what counts: unknown, disabled, wrong kind; not a limit reached
    api.create(code="FULL-1", limits={"total": 1})
    assert probe(api, "FULL-1", 0, path="/v1/redemptions").status_code == 201
    for i in range(10):
        assert probe(api, "FULL-1", 0, user=f"f{i}", path="/v1/redemptions").status_code == 422
    api.create(code="OFF-1")
    assert api.post("/v1/coupons/OFF-1/disable", {}).status_code == 200
    v = api.post("/v1/coupons", {"code": "VOUCH-1", "kind": "voucher", "balance": 100,
                                 "currency": "EUR"})
    assert v.status_code == 201
    got = [probe(api, "OFF-1", 0).json().get("reason"), probe(api, "VOUCH-1", 0).json()
           .get("reason"), probe(api, "NOPE-1", 0).status_code,
           api.get("/v1/vouchers/NOPE-2/balance", headers={"X-Redeemd-Now": at(0)}).status_code,
           api.post("/v1/vouchers/NOPE-3/pay", {"amount": 1, "currency": "EUR", "user_id": "u"},
                    headers={"X-Redeemd-Now": at(0), "Idempotency-Key": "p"}).status_code]
    assert got == ["coupon_disabled", "kind_mismatch", 404, 404, 404], got
    # the budget is spent: even a valid code is refused now, before it is looked up
    r = probe(api, "GOOD-1", 0, user="late")
    assert r.status_code == 429 and r.json()["error"]["details"]["budget"] == "key", r.text


@pytest.mark.daemon_args("--guess_user_per_min=60", "--guess_user_burst=3",
                         "--guess_session_per_min=60", "--guess_session_burst=4",
                         "--guess_ip_per_min=60", "--guess_ip_burst=5")
def test_user_session_and_address_budgets(stack):
    redis, d, api, db = stack
    api.create(code="GOOD-2")
    # per user
    assert [probe(api, f"U-{i}", 0, user="mallory").status_code for i in range(4)] == \
        [404] * 3 + [429]
    assert probe(api, "GOOD-2", 0, user="mallory").json()["error"]["details"]["budget"] == "user"
    assert probe(api, "GOOD-2", 0, user="alice").json()["valid"] is True
    assert probe(api, "GOOD-2", 70, user="mallory").json()["valid"] is True  # refilled
    # per session, across users
    s = {"session_id": "sess-evil"}
    codes = [probe(api, f"S-{i}", 0, user=f"s{i}", customer=s).status_code for i in range(5)]
    assert codes == [404] * 4 + [429], codes
    assert probe(api, "S-X", 1, user="s9", customer=s).status_code == 404  # one refilled
    assert probe(api, "S-Y", 1, user="s8", customer=s).status_code == 429
    # per customer address, across users and sessions; another address is untouched, and
    # without a customer address (the checkout server's own) there is no address budget
    c = {"ip": "203.0.113.66"}
    codes = [probe(api, f"I-{i}", 0, user=f"i{i}", customer=c).status_code for i in range(6)]
    assert codes == [404] * 5 + [429], codes
    r = probe(api, "GOOD-2", 0, user="i99", customer=c)
    assert r.status_code == 429 and r.json()["error"]["details"]["budget"] == "ip"
    assert probe(api, "GOOD-2", 0, user="i98", customer={"ip": "203.0.113.67"}).json()["valid"]
    codes = [probe(api, f"P-{i}", 0, user=f"p{i}").status_code for i in range(8)]
    assert codes == [404] * 8, codes


@key_only()
def test_exempt_keys(stack):
    redis, d, api, db = stack
    trusted = make_key(redis.port, "admin,redeem", "back office")
    kid = trusted.split("_")[1]
    d.stop()
    d.extra.append(f"--guess_exempt_keys=xxxxxxxx, {kid}")
    d.start()
    b = Api(d.url, trusted)
    wait_for(lambda: key_loaded(d.url, trusted, ok=(404,)), what="key loaded")
    assert {probe(b, f"E-{i}", 0).status_code for i in range(20)} == {404}
    assert [probe(api, f"N-{i}", 0).status_code for i in range(6)] == [404] * 5 + [429]


@key_only()
def test_refusals_are_sampled_into_the_ledger(stack):
    redis, d, api, db = stack
    codes = [probe(api, f"L-{i}", 0).status_code for i in range(5 + 20)]
    assert codes.count(429) == 20
    # refusals 1, 2, 4, 8, 16 of the minute: five rows, the last counting 16 of the 20
    q = ("SELECT details->>'budget', (details->>'count')::int, details->>'minute' FROM "
         "transactions WHERE kind = 'rate_limited' ORDER BY (details->>'count')::int")
    wait_for(lambda: len(sql(db, q)) == 5, timeout=30, what="5 rate_limited rows")
    rows = sql(db, q)
    assert [r[1] for r in rows] == [1, 2, 4, 8, 16] and {r[0] for r in rows} == {"key"}
    assert rows[0][2] == "2031-06-01T12:00:00Z"
    page = api.get("/v1/transactions?kind=rate_limited").json()
    assert len(page["data"]) == 5 and page["data"][0]["reason"] == "rate_limited"


def refusals_counted_in_redis(redis):
    """Calls of guess.lua that counted a refusal: it alone increments plain keys (INCR, now
    INCRBY), where the shipper's and the checkout's scripts run beside it at any time."""
    total = 0
    for port in redis.ports:  # every primary of a cluster (replicas repeat their writes)
        node = redis.node(port)
        if node.info("replication")["role"] != "master":
            continue
        stats = node.info("commandstats")
        total += sum(v["calls"] for k, v in stats.items()
                     if k in ("cmdstat_incr", "cmdstat_incrby"))
    return total


@key_only()
def test_a_spent_budget_is_refused_without_asking_redis_each_time(stack):
    """Once Redis said a budget is spent and when it refills, the worker refuses the value
    itself until then: a flood of refusals costs Redis a call per ledger sample (the 1st,
    2nd, 4th ... of the minute), not one each, and the ledger rows are the same."""
    redis, d, api, db = stack
    s = requests.Session()  # one connection: one worker, whose table is asked
    body = {"user_id": "u", "order_amount": 100, "currency": "EUR"}

    def guess(code, t):
        return s.post(d.url + "/v1/validate", json=dict(body, code=code), headers={
            "Authorization": f"Bearer {api.key}", "X-Redeemd-Now": at(t)}, timeout=10)
    assert [guess(f"F-{i}", 0).status_code for i in range(5)] == [404] * 5
    before = refusals_counted_in_redis(redis)
    answers = [guess(f"G-{i}", 0.5) for i in range(200)]
    calls = refusals_counted_in_redis(redis) - before
    assert {r.status_code for r in answers} == {429}
    # Retry-After counts down to the refill at +1 s whoever answered
    assert {r.json()["error"]["details"]["budget"] for r in answers} == {"key"}
    assert {r.json()["error"]["details"]["retry_after_ms"] for r in answers} == {500}, \
        {r.json()["error"]["details"]["retry_after_ms"] for r in answers}
    assert {r.headers["Retry-After"] for r in answers} == {"1"}
    assert calls == 8, f"{calls} calls to Redis for 200 refusals"  # 1, 2, 4, ... 128
    q = ("SELECT (details->>'count')::int FROM transactions WHERE kind = 'rate_limited' "
         "ORDER BY 1")
    wait_for(lambda: len(sql(db, q)) == 8, timeout=30, what="8 rate_limited rows")
    assert [r[0] for r in sql(db, q)] == [1, 2, 4, 8, 16, 32, 64, 128]
    m = requests.get(d.url + "/metrics", timeout=5).text
    line = [l for l in m.splitlines() if l.startswith('redeemd_rate_limited_total{budget="key"}')]
    assert line and int(line[0].split()[1]) == 200, line
    # refilled: one more lookup at +1 s, refused again right after (Redis asked again)
    assert [guess(f"H-{i}", 1).status_code for i in range(2)] == [404, 429]
