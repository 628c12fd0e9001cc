"""Stored-value vouchers: pay, refund, recharge, lifecycle, and exact balances under
concurrency (the seed voucher service accepted two full-balance payments out of eight)."""
import threading
import uuid

import pytest
import requests

from conftest import Api, unique_code
from test_ledger import drained, rows


def voucher(api, balance=1000, **fields):
    body = {"kind": "voucher", "code": unique_code("V"), "balance": balance, "currency": "EUR"}
    body.update(fields)
    r = api.post("/v1/coupons", body)
    assert r.status_code == 201, r.text
    return r.json()


def pay(api, code, amount, user="alice", key=None, currency="EUR", now=None, **extra):
    headers = {"Idempotency-Key": key or uuid.uuid4().hex}
    if now:
        headers["X-Redeemd-Now"] = now
    body = {"amount": amount, "currency": currency, "user_id": user}
    body.update(extra)
    return api.post(f"/v1/vouchers/{code}/pay", body, headers=headers)


def refund(api, pid, amount=None, key=None):
    body = {"amount": amount} if amount is not None else None
    return api.post(f"/v1/redemptions/{pid}/reverse", body,
                    headers={"Idempotency-Key": key or uuid.uuid4().hex})


def recharge(api, code, amount, key=None, **extra):
    body = {"amount": amount}
    body.update(extra)
    return api.post(f"/v1/vouchers/{code}/recharge", body,
                    headers={"Idempotency-Key": key or uuid.uuid4().hex})


def balance(api, code):
    r = api.get(f"/v1/vouchers/{code}/balance")
    assert r.status_code == 200, r.text
    return r.json()


def err(r, status, code):
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code, r.text
    return r.json()["error"]


def test_pay_below_equal_and_above_the_balance(api):
    v = voucher(api, 1000)
    assert v["balance"] == 1000 and v["outstanding"] == 1000 and v["discount"] is None
    r = pay(api, v["code"].lower(), 300, order_id="o-1")
    assert r.status_code == 201, r.text
    p = r.json()
    assert p["balance"] == 700 and p["amount"] == 300 and p["kind"] == "pay"
    assert p["id"].startswith("rdm_") and p["order_id"] == "o-1"
    r = pay(api, v["code"], 700)
    assert r.status_code == 201 and r.json()["balance"] == 0
    e = err(pay(api, v["code"], 1), 422, "insufficient_balance")
    assert e["details"]["balance"] == 0
    b = balance(api, v["code"])
    assert b == {"code": v["code"], "balance": 0, "currency": "EUR", "status": "exhausted",
                 "expires_at": None, "loaded": 1000, "spent": 1000, "refunded": 0,
                 "outstanding": 0}
    got = api.get(f"/v1/redemptions/{p['id']}").json()
    assert got["kind"] == "pay" and got["amount"] == 300 and got["refunded"] == 0
    assert got["balance_after"] == 700 and got["status"] == "active"
    e = err(pay(api, v["code"], 2000), 422, "insufficient_balance")


@pytest.mark.parametrize("amount", [0, -5, 1.5, 10**16, "100", None, True, 2**63])
def test_bad_amounts_are_invalid_requests(api, amount):
    v = voucher(api)
    e = err(pay(api, v["code"], amount), 400, "invalid_request")
    assert e["details"]["field"] == "amount"
    e = err(recharge(api, v["code"], amount), 400, "invalid_request")
    assert e["details"]["field"] == "amount"
    assert balance(api, v["code"])["balance"] == 1000


def test_bad_requests(api, keys, daemon):
    v = voucher(api)
    r = api.post(f"/v1/vouchers/{v['code']}/pay",
                 {"amount": 5, "currency": "EUR", "user_id": "a"})
    err(r, 400, "idempotency_key_required")
    r = pay(api, v["code"], 5, colour="red")
    assert err(r, 400, "invalid_request")["details"]["field"] == "colour"
    r = pay(api, v["code"], 5, currency="EURO")
    assert err(r, 400, "invalid_request")["details"]["field"] == "currency"
    r = api.post(f"/v1/vouchers/{v['code']}/pay", {"amount": 5, "currency": "EUR"},
                 headers={"Idempotency-Key": "x1"})
    assert err(r, 400, "invalid_request")["details"]["field"] == "user_id"
    # creation: balance and currency are required, a discount is not a voucher's
    for body, field in [({"kind": "voucher", "currency": "EUR"}, "balance"),
                        ({"kind": "voucher", "balance": 10}, "currency"),
                        ({"kind": "voucher", "balance": 0, "currency": "EUR"}, "balance"),
                        ({"kind": "gift", "balance": 10, "currency": "EUR"}, "kind")]:
        r = api.post("/v1/coupons", body)
        assert err(r, 400, "invalid_request")["details"]["field"] == field
    # scopes: pay needs redeem, recharge needs admin
    redeem_only = Api(daemon.url, keys["redeem"])
    err(recharge(redeem_only, v["code"], 5), 403, "forbidden")
    fraud = Api(daemon.url, keys["fraud"])
    err(pay(fraud, v["code"], 5), 403, "forbidden")


def test_unknown_disabled_expired_and_wrong_currency(api):
    api.now = "2029-12-01T00:00:00Z"  # this test's clock: every date in it is after
    err(pay(api, "NO-SUCH-VOUCHER", 5), 404, "coupon_not_found")
    err(api.get("/v1/vouchers/NO-SUCH-VOUCHER/balance"), 404, "coupon_not_found")
    err(recharge(api, "NO-SUCH-VOUCHER", 5), 404, "coupon_not_found")
    v = voucher(api, 100, expires_at="2030-01-01T00:00:00Z")
    assert api.post(f"/v1/coupons/{v['code']}/disable").status_code == 200
    err(pay(api, v["code"], 5), 422, "coupon_disabled")
    assert balance(api, v["code"])["status"] == "disabled"
    assert api.post(f"/v1/coupons/{v['code']}/enable").status_code == 200
    assert pay(api, v["code"], 5).status_code == 201
    err(pay(api, v["code"], 5, now="2030-01-01T00:00:00Z"), 422, "coupon_expired")
    r = api.get(f"/v1/vouchers/{v['code']}/balance", headers={
        "X-Redeemd-Now": "2030-01-02T00:00:00Z"})
    assert r.json()["status"] == "expired" and r.json()["outstanding"] == 0
    err(pay(api, v["code"], 5, currency="USD"), 422, "currency_mismatch")
    assert balance(api, v["code"])["balance"] == 95


def test_kinds_do_not_mix(api):
    c = api.create()
    err(pay(api, c["code"], 5), 422, "kind_mismatch")
    err(api.get(f"/v1/vouchers/{c['code']}/balance"), 422, "kind_mismatch")
    err(recharge(api, c["code"], 5), 422, "kind_mismatch")
    v = voucher(api)
    err(api.redeem(v["code"]), 422, "kind_mismatch")
    r = api.validate(v["code"])
    assert r.status_code == 200 and r.json()["valid"] is False
    assert r.json()["reason"] == "kind_mismatch"
    # a redemption is reversed whole: no amount
    red = api.redeem(c["code"]).json()
    r = refund(api, red["id"], 5)
    assert err(r, 400, "invalid_request")["details"]["field"] == "amount"


def test_limits_apply_to_payments(api):
    v = voucher(api, 1000, limits={"per_user": 2, "total": 3})
    assert pay(api, v["code"], 1, user="a").status_code == 201
    assert pay(api, v["code"], 1, user="a").status_code == 201
    err(pay(api, v["code"], 1, user="a"), 422, "limit_user_reached")
    assert pay(api, v["code"], 1, user="b").status_code == 201
    err(pay(api, v["code"], 1, user="c"), 422, "limit_total_reached")
    assert balance(api, v["code"])["balance"] == 997


def test_replay_debits_once(api):
    v = voucher(api, 1000)
    a = pay(api, v["code"], 250, key="same")
    b = pay(api, v["code"], 250, key="same")
    assert a.status_code == b.status_code == 201
    assert a.json() == b.json() and b.headers.get("Idempotent-Replayed") == "true"
    err(pay(api, v["code"], 251, key="same"), 409, "idempotency_key_reused")
    assert balance(api, v["code"])["balance"] == 750
    # a rejection is remembered too
    x = pay(api, v["code"], 5000, key="big")
    y = pay(api, v["code"], 5000, key="big")
    assert x.json()["error"]["details"] == y.json()["error"]["details"]


def test_refunds_full_partial_and_replayed(api):
    v = voucher(api, 1000, limits={"per_user": 1})
    p = pay(api, v["code"], 400).json()
    err(pay(api, v["code"], 1), 422, "limit_user_reached")
    r = refund(api, p["id"], 100, key="r1")
    assert r.status_code == 200, r.text
    j = r.json()
    assert j["amount"] == 100 and j["balance"] == 700 and j["refundable"] == 300
    assert j["status"] == "partially_refunded"
    again = refund(api, p["id"], 100, key="r1")
    assert again.json() == j and again.headers.get("Idempotent-Replayed") == "true"
    err(refund(api, p["id"], 50, key="r1"), 409, "idempotency_key_reused")
    e = err(refund(api, p["id"], 301), 422, "refund_exceeds_payment")
    assert e["details"]["refundable"] == 300
    # the use still counts while part of the payment stands
    err(pay(api, v["code"], 1), 422, "limit_user_reached")
    r = refund(api, p["id"], key="r3")  # all that is left
    assert r.status_code == 200 and r.json()["amount"] == 300
    assert r.json()["balance"] == 1000 and r.json()["status"] == "refunded"
    err(refund(api, p["id"]), 409, "already_reversed")
    b = balance(api, v["code"])
    assert (b["balance"], b["loaded"], b["spent"], b["refunded"]) == (1000, 1000, 400, 400)
    # fully refunded: the use is given back
    assert pay(api, v["code"], 1).status_code == 201
    # a refund moves money: it needs a key
    p2 = pay(api, v["code"], 10, user="bob").json()
    r = api.post(f"/v1/redemptions/{p2['id']}/reverse", {"amount": 5})
    err(r, 400, "idempotency_key_required")
    assert api.get(f"/v1/redemptions/{p['id']}").json()["refunded"] == 400


@pytest.mark.daemon_args("--voucher_max_balance=10000")
def test_recharge_up_to_the_maximum(stack):
    redis, d, api, conninfo = stack
    r = api.post("/v1/coupons", {"kind": "voucher", "balance": 10001, "currency": "EUR"})
    e = err(r, 400, "invalid_request")
    assert e["details"]["field"] == "balance" and "10000" in e["message"]
    v = voucher(api, 9000)
    r = recharge(api, v["code"], 500, key="k1")
    assert r.status_code == 200 and r.json()["balance"] == 9500 and r.json()["loaded"] == 9500
    again = recharge(api, v["code"], 500, key="k1")
    assert again.json() == r.json() and again.headers.get("Idempotent-Replayed") == "true"
    e = err(recharge(api, v["code"], 501), 422, "balance_limit_exceeded")
    assert e["details"] == {"balance": 9500, "max_balance": 10000, "rechargeable": 500}
    err(recharge(api, v["code"], 5, currency="USD"), 422, "currency_mismatch")
    assert recharge(api, v["code"], 500).json()["balance"] == 10000
    b = balance(api, v["code"])
    assert (b["balance"], b["loaded"]) == (10000, 10000)
    # a PATCH never sets money
    r = api.patch(f"/v1/coupons/{v['code']}", {"balance": 5})
    assert err(r, 400, "invalid_request")["details"]["field"] == "balance"


def run_parallel(n_threads, jobs, fn):
    """Runs fn(api, job) for every job on n_threads threads, each with its own connection."""
    out, lock, it = [], threading.Lock(), iter(jobs)

    def worker(url, key):
        a = Api(url, key)
        while True:
            with lock:
                job = next(it, None)
            if job is None:
                return
            res = fn(a, job)
            with lock:
                out.append(res)
    return worker, out


def parallel(api, n_threads, jobs, fn):
    worker, out = run_parallel(n_threads, jobs, fn)
    ts = [threading.Thread(target=worker, args=(api.base, api.key)) for _ in range(n_threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return out


def test_hundred_parallel_full_balance_payments_exactly_one_wins(api):
    v = voucher(api, 5000)
    out = parallel(api, 50, range(100),
                   lambda a, i: pay(a, v["code"], 5000, user=f"u{i}").status_code)
    assert out.count(201) == 1 and out.count(422) == 99, sorted(set(out))
    assert balance(api, v["code"])["balance"] == 0


def test_thousand_parallel_payments_of_one_on_five_hundred(stack):
    redis, d, api, conninfo = stack
    v = voucher(api, 500)
    out = parallel(api, 64, range(1000),
                   lambda a, i: pay(a, v["code"], 1, user=f"u{i}").status_code)
    assert out.count(201) == 500 and out.count(422) == 500, sorted(set(out))
    b = balance(api, v["code"])
    assert b["balance"] == 0 and b["spent"] == 500
    drained(d)
    (paid, n_ok, n_rej), = rows(conninfo, """
        SELECT coalesce(sum(paid_amount) FILTER (WHERE outcome = 'accepted'), 0),
               count(*) FILTER (WHERE outcome = 'accepted'),
               count(*) FILTER (WHERE outcome = 'rejected')
        FROM transactions WHERE code = %s AND kind = 'pay'""", v["code"])
    assert (paid, n_ok, n_rej) == (500, 500, 500)
    (after,), = rows(conninfo, """SELECT min(balance_after) FROM transactions
        WHERE code = %s AND kind = 'pay' AND outcome = 'accepted'""", v["code"])
    assert after == 0


def test_refunds_racing_payments_stay_within_bounds(stack):
    redis, d, api, conninfo = stack
    v = voucher(api, 300)
    code = v["code"]
    paid_ids, lock, stop = [], threading.Lock(), threading.Event()
    refunded = []

    def payer(i):
        a = Api(api.base, api.key)
        for k in range(40):
            r = pay(a, code, 7, user=f"p{i}-{k}")
            assert r.status_code in (201, 422), r.text
            if r.status_code == 201:
                assert 0 <= r.json()["balance"] <= 300
                with lock:
                    paid_ids.append(r.json()["id"])

    def refunder():
        a = Api(api.base, api.key)
        while not stop.is_set() or paid_ids:
            with lock:
                pid = paid_ids.pop() if paid_ids else None
            if pid is None:
                continue
            r = refund(a, pid, 3)
            assert r.status_code == 200, r.text
            assert 0 <= r.json()["balance"] <= 300
            with lock:
                refunded.append(3)
    ps = [threading.Thread(target=payer, args=(i,)) for i in range(8)]
    rs = [threading.Thread(target=refunder) for _ in range(4)]
    for t in ps + rs:
        t.start()
    for t in ps:
        t.join()
    stop.set()
    for t in rs:
        t.join()
    b = balance(api, code)
    assert 0 <= b["balance"] <= b["loaded"] == 300
    assert b["balance"] == b["loaded"] - b["spent"] + b["refunded"]
    assert b["refunded"] == sum(refunded)
    drained(d)
    (spent, back, loaded_rows), = rows(conninfo, """
        SELECT coalesce(sum(paid_amount) FILTER (WHERE kind = 'pay'), 0),
               coalesce(sum(paid_amount) FILTER (WHERE kind = 'refund'), 0),
               count(*) FILTER (WHERE kind = 'coupon_create')
        FROM transactions WHERE code = %s AND outcome = 'accepted'""", code)
    assert (spent, back, loaded_rows) == (b["spent"], b["refunded"], 1)
    assert 300 - spent + back == b["balance"]


def test_ledger_rows_for_pay_refund_recharge(stack):
    redis, d, api, conninfo = stack
    v = voucher(api, 1000)
    p = pay(api, v["code"], 600).json()
    refund(api, p["id"], 100)
    recharge(api, v["code"], 50)
    err(pay(api, v["code"], 10_000), 422, "insufficient_balance")
    drained(d)
    got = rows(conninfo, """SELECT kind, outcome, reason, paid_amount, balance_after, ref_id
        FROM transactions WHERE code = %s AND kind <> 'coupon_create' ORDER BY ts, kind""",
               v["code"])
    assert got == [("pay", "accepted", None, 600, 400, None),
                   ("refund", "accepted", None, 100, 500, p["id"]),
                   ("recharge", "accepted", None, 50, 550, None),
                   ("pay", "rejected", "insufficient_balance", None, 550, None)], got


def test_payment_from_the_ledger_once_shipped(stack):
    redis, d, api, conninfo = stack
    v = voucher(api, 1000)
    p = pay(api, v["code"], 300, order_id="o-9").json()
    g = api.get(f"/v1/redemptions/{p['id']}").json()
    assert g["source"] in ("redis", "ledger") and g["status"] == "active"
    refund(api, p["id"], 120)
    drained(d)
    g = api.get(f"/v1/redemptions/{p['id']}").json()
    assert g["source"] == "ledger" and g["kind"] == "pay" and g["order_id"] == "o-9"
    assert (g["amount"], g["refunded"], g["status"], g["balance_after"]) == \
        (300, 120, "partially_refunded", 700)


@pytest.mark.daemon_args("--voucher_max_balance=1000000000000000")
def test_amounts_up_to_ten_to_the_fifteen_stay_exact(stack):
    redis, d, api, conninfo = stack
    big = 10**15
    v = voucher(api, big - 7)
    p = pay(api, v["code"], big - 8)
    assert p.status_code == 201 and p.json()["balance"] == 1, p.text
    r = refund(api, p.json()["id"], 10**14 + 3)
    assert r.status_code == 200 and r.json()["balance"] == 10**14 + 4, r.text
    assert recharge(api, v["code"], big - (10**14 + 4)).json()["balance"] == big
    err(recharge(api, v["code"], 1), 422, "balance_limit_exceeded")
    b = balance(api, v["code"])
    assert (b["balance"], b["loaded"], b["spent"], b["refunded"]) == \
        (big, big - 7 + big - (10**14 + 4), big - 8, 10**14 + 3)
