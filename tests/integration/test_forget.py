"""Ship, then forget: Redis holds what decisions need now and nothing per redemption once
the ledger has it. A redemption's facts live in its outbox entry until shipped, then in the
ledger; its idempotency record is a field for its window only; what was given back of it is
a mark for its reversal window. Reversals, refunds, replays and reads work from either
place, exactly once."""
import datetime
import hashlib
import json
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import Api, wait_for
from test_ledger import drained, rows
from test_vouchers import pay, refund, voucher

NOW = "2030-06-15T12:00:00Z"


def keys_like(r, pattern):
    return sorted(r.scan_iter(match=pattern, count=10000))


def per_use_keys(r):
    """Keys Redis would hold per redemption: records ({b}:r:), marks ({b}:x:) and
    idempotency keys of any kind ({b}:i:)."""
    return keys_like(r, "{*}:r:*") + keys_like(r, "{*}:x:*") + keys_like(r, "{*}:i:*")


def stream_entries(r):
    return sum(r.xlen(k) for k in r.scan_iter(match="{*}:log", count=10000))


@pytest.mark.daemon_args("--idempotency_ttl_s=1", "--buckets=16")
def test_nothing_is_kept_per_redemption_after_its_window(stack):
    redis, d, api, db = stack
    r = redis.client()
    c = api.create(limits={"per_user": 1})
    ids = [api.redeem(c["code"], user=f"u{i}").json()["id"] for i in range(200)]
    assert len(set(ids)) == 200
    drained(d)
    assert stream_entries(r) == 0  # shipped entries leave the streams
    assert keys_like(r, "{*}:r:*") == [] and keys_like(r, "{*}:x:*") == []
    # what is left per redemption is its idempotency record (a field of a slice's hash,
    # test_idempotency_records_are_small), for its window only: then nothing at all
    wait_for(lambda: per_use_keys(r) == [], timeout=15, what="idempotency records to expire")
    # the ledger keeps every redemption, and reads still find them
    assert rows(db, "SELECT count(*) FROM transactions WHERE kind = 'redeem' AND "
                    "outcome = 'accepted' AND code = %s", c["code"]) == [(200,)]
    g = api.get(f"/v1/redemptions/{ids[7]}").json()
    assert g["source"] == "ledger" and g["user_id"] == "u7" and g["status"] == "active"
    # per-user counts stay (one field per user): the limit still holds
    assert api.redeem(c["code"], user="u7").json()["error"]["code"] == "limit_user_reached"
    assert r.hlen(next(iter(keys_like(r, "{*}:u:*")))) == 200


@pytest.mark.daemon_args("--buckets=16")
def test_idempotency_records_are_small(stack):
    """The records of 2,000 redemptions cost at most 100 bytes each (Redis' own MEMORY
    USAGE of the slice hashes, which hold nothing else)."""
    redis, d, api, db = stack
    r = redis.client()
    c = api.create()
    with ThreadPoolExecutor(8) as ex:
        got = list(ex.map(lambda i: Api(d.url, api.key).redeem(c["code"], user=f"m{i}")
                          .status_code, range(2000)))
    assert got == [201] * 2000
    drained(d)
    idem = keys_like(r, "{*}:i:*")
    assert sum(r.hlen(k) for k in idem) == 2000
    used = sum(r.memory_usage(k, samples=0) for k in idem)
    assert used / 2000 <= 100, used / 2000


@pytest.mark.daemon_args("--shipper=false")  # the entries wait in Redis
def test_replays_answer_the_same_before_and_after_shipping_unshipped(stack):
    _replays_answer_the_same_before_and_after_shipping(stack, False)


def test_replays_answer_the_same_before_and_after_shipping_shipped(stack):
    _replays_answer_the_same_before_and_after_shipping(stack, True)


def _replays_answer_the_same_before_and_after_shipping(stack, shipped):
    redis, d, api, db = stack
    c = api.create(limits={"total": 5, "per_user": 2})
    v = voucher(api, 1000)
    k1, k2, k3 = (uuid.uuid4().hex for _ in range(3))
    first = api.redeem(c["code"], user="ann", key=k1, now=NOW, order_id="o-1")
    refused = api.redeem(c["code"], user="ann", key=k2, now=NOW, currency="USD")
    paid = pay(api, v["code"], 250, user="ann", key=k3, now=NOW, order_id="o-2")
    assert (first.status_code, refused.status_code, paid.status_code) == (201, 422, 201)
    if shipped:
        drained(d)
        assert stream_entries(redis.client()) == 0
    again = [api.redeem(c["code"], user="ann", key=k1, now=NOW, order_id="o-1"),
             api.redeem(c["code"], user="ann", key=k2, now=NOW, currency="USD"),
             pay(api, v["code"], 250, user="ann", key=k3, now=NOW, order_id="o-2")]
    for before, after in zip((first, refused, paid), again):
        assert after.status_code == before.status_code
        assert after.headers.get("Idempotent-Replayed") == "true"
        if before.status_code == 201:
            assert after.content == before.content  # byte for byte
        else:  # the same refusal (each answer has its own request id)
            b, a = before.json()["error"], after.json()["error"]
            assert a.pop("request_id") != b.pop("request_id") and a == b
    # the same key with another request is still refused after shipping
    other = api.redeem(c["code"], user="bob", key=k1, now=NOW)
    assert other.status_code == 409 and other.json()["error"]["code"] == "idempotency_key_reused"
    # nothing was counted twice
    assert api.get(f"/v1/coupons/{c['code']}").json()["used"]["total"] == 1
    assert api.get(f"/v1/vouchers/{v['code']}/balance").json()["balance"] == 750


@pytest.mark.daemon_args("--shipper=false")  # the entries wait in Redis
def test_reversal_and_refund_before_and_after_shipping_unshipped(stack):
    _reversal_and_refund_before_and_after_shipping(stack, False)


def test_reversal_and_refund_before_and_after_shipping_shipped(stack):
    _reversal_and_refund_before_and_after_shipping(stack, True)


def _reversal_and_refund_before_and_after_shipping(stack, shipped):
    redis, d, api, db = stack
    api.now = NOW  # every call at the uses' time: well inside the reversal window
    c = api.create(limits={"per_user": 1, "per_user_daily": 1})
    v = voucher(api, 1000, limits={"per_user": 1})
    red = api.redeem(c["code"], user="ann", now=NOW).json()
    p = pay(api, v["code"], 300, user="ann", now=NOW).json()
    if shipped:
        drained(d)
    g = api.get(f"/v1/redemptions/{red['id']}").json()
    assert g["source"] == ("ledger" if shipped else "redis") and g["status"] == "active"
    rev = api.post(f"/v1/redemptions/{red['id']}/reverse", headers={"X-Redeemd-Now": NOW})
    assert rev.status_code == 200, rev.text
    assert rev.json()["status"] == "reversed"
    # the use is given back to the day it was taken from: the same user redeems again
    assert api.redeem(c["code"], user="ann", now=NOW).status_code == 201
    again = api.post(f"/v1/redemptions/{red['id']}/reverse", headers={"X-Redeemd-Now": NOW})
    assert again.status_code == 409 and again.json()["error"]["code"] == "already_reversed"
    g = api.get(f"/v1/redemptions/{red['id']}").json()
    assert g["status"] == "reversed" and g["reversal_id"] == rev.json()["reversal_id"]

    part = refund(api, p["id"], 100)
    assert part.status_code == 200 and part.json()["refundable"] == 200
    assert pay(api, v["code"], 50, user="ann", now=NOW).json()["error"]["code"] == \
        "limit_user_reached"  # a partial refund keeps the use
    rest = refund(api, p["id"])
    assert rest.status_code == 200 and rest.json()["status"] == "refunded"
    assert pay(api, v["code"], 50, user="ann", now=NOW).status_code == 201  # use given back
    assert refund(api, p["id"], 1).json()["error"]["code"] == "already_reversed"
    g = api.get(f"/v1/redemptions/{p['id']}").json()
    assert (g["status"], g["refunded"]) == ("refunded", 300)
    assert api.get(f"/v1/vouchers/{v['code']}/balance").json()["balance"] == 950

    if not shipped:
        return
    drained(d)
    got = rows(db, "SELECT kind, outcome, count(*) FROM transactions WHERE ref_id IN (%s, %s) "
                   "GROUP BY 1, 2 ORDER BY 1, 2", red["id"], p["id"])
    assert got == [("refund", "accepted", 2), ("refund", "rejected", 1),
                   ("reverse", "accepted", 1), ("reverse", "rejected", 1)]


@pytest.mark.daemon_args("--shipper=false")  # the entries wait in Redis
def test_concurrent_reversals_give_back_once_unshipped(stack):
    _concurrent_reversals_give_back_once(stack, False)


def test_concurrent_reversals_give_back_once_shipped(stack):
    _concurrent_reversals_give_back_once(stack, True)


def _concurrent_reversals_give_back_once(stack, shipped):
    redis, d, api, db = stack
    c = api.create(limits={"total": 3})
    red = [api.redeem(c["code"], user=f"u{i}").json() for i in range(3)]
    if shipped:
        drained(d)
    barrier = threading.Barrier(12)

    def reverse(rid):
        a = Api(d.url, api.key)
        barrier.wait()
        return a.post(f"/v1/redemptions/{rid}/reverse").status_code

    with ThreadPoolExecutor(12) as ex:
        got = list(ex.map(reverse, [red[0]["id"]] * 12))
    assert sorted(got) == [200] + [409] * 11, got
    coupon = api.get(f"/v1/coupons/{c['code']}").json()
    assert coupon["used"]["total"] == 2


def test_reversals_racing_the_shipper(stack):
    """Redemptions reversed the moment they are answered, while the shipper ships them: each
    is given back exactly once, whichever side of the shipment its reversal lands on."""
    redis, d, api, db = stack
    c = api.create()
    n = 300
    results = []

    def one(i):
        a = Api(d.url, api.key)
        rid = a.redeem(c["code"], user=f"r{i}").json()["id"]
        first = a.post(f"/v1/redemptions/{rid}/reverse").status_code
        second = a.post(f"/v1/redemptions/{rid}/reverse").status_code
        return rid, first, second

    with ThreadPoolExecutor(8) as ex:
        results = list(ex.map(one, range(n)))
    assert all(f == 200 and s == 409 for _, f, s in results), results[:5]
    assert api.get(f"/v1/coupons/{c['code']}").json()["used"]["total"] == 0
    drained(d)
    got = rows(db, "SELECT kind, outcome, count(*) FROM transactions WHERE code = %s AND "
                   "kind IN ('redeem', 'reverse') GROUP BY 1, 2 ORDER BY 1, 2", c["code"])
    assert got == [("redeem", "accepted", n), ("reverse", "accepted", n),
                   ("reverse", "rejected", n)]


@pytest.mark.daemon_args("--reversal_window_s=3600")
def test_the_reversal_window(stack):
    redis, d, api, db = stack
    c = api.create(limits={"total": 2})
    v = voucher(api, 1000)
    old = api.redeem(c["code"], user="ann", now="2030-06-15T10:00:00Z").json()
    p = pay(api, v["code"], 100, now="2030-06-15T10:00:00Z").json()
    late = api.post(f"/v1/redemptions/{old['id']}/reverse",
                    headers={"X-Redeemd-Now": "2030-06-15T11:00:01Z"})
    assert late.status_code == 422
    assert late.json()["error"]["code"] == "reversal_window_passed"
    late = api.post(f"/v1/redemptions/{p['id']}/reverse", headers={
        "X-Redeemd-Now": "2030-06-15T11:00:01Z", "Idempotency-Key": "w1"})
    assert late.json()["error"]["code"] == "reversal_window_passed"
    drained(d)  # also from the ledger
    late = api.post(f"/v1/redemptions/{old['id']}/reverse",
                    headers={"X-Redeemd-Now": "2030-06-15T11:00:01Z"})
    assert late.json()["error"]["code"] == "reversal_window_passed"
    ok = api.post(f"/v1/redemptions/{old['id']}/reverse",
                  headers={"X-Redeemd-Now": "2030-06-15T11:00:00Z"})
    assert ok.status_code == 200
    # the mark lasts the window and a day: no longer than that
    mark = keys_like(redis.client(), "{*}:x:*")
    assert len(mark) == 1 and 0 < redis.client().pttl(mark[0]) <= (3600 + 86400) * 1000


def fingerprint(code, user, amount, currency, order_id=None, meta=None):
    """What makes two requests the same, as 16 hex digits: 64-bit FNV-1a over the fields,
    each followed by 0xff, absent ones as 0x01 (rd_redeem_req_fingerprint)."""
    h = 14695981039346656037
    for part in (code, user, str(amount), currency, order_id or "\x01", meta or "\x01"):
        for byte in part.encode() + b"\xff":
            h = ((h ^ byte) * 1099511628211) % 2 ** 64
    return f"{h:016x}"


def ms(t):
    return int(datetime.datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp() * 1000)


def test_records_of_redeemd_0_1_are_still_honoured(stack):
    """An install upgraded from 0.1 has records in 0.1's layout: per-user counts in three
    fields, a record per redemption, string idempotency records. They keep working until
    they expire, and a user's counts move to the one field at their next change."""
    redis, d, api, db = stack
    r = redis.client()
    c = api.create(limits={"per_user": 2, "per_user_daily": 5})
    ck = next(r.scan_iter(match=f"{{*}}:c:{c['code']}"))
    r.hdel(ck, "v2")  # a coupon of 0.1 (this version marks its own: see the next test)
    assert api.redeem(c["code"], user="new", now=NOW).status_code == 201
    b = ck.split(":c:")[0]
    uk = f"{b}:u:{c['code']}"
    _, day, _, week, _ = r.hget(uk, "u:new").split(":")
    # 0.1's per-user fields: "old" has used the coupon twice (its limit)
    r.hset(uk, mapping={"t:old": 2, "d:old": f"{day}:2", "w:old": f"{week}:2"})
    r.hincrby(ck, "used", 2)
    assert api.redeem(c["code"], user="old", now=NOW).json()["error"]["code"] == \
        "limit_user_reached"
    # 0.1's record of one of those redemptions: reversing it gives the use back
    oid = f"rdm_{b[1:5]}_" + "a" * 20
    r.hset(f"{b}:r:{oid}", mapping={
        "code": c["code"], "user": "old", "order": "", "amount": "5000", "currency": "EUR",
        "dtype": "percent", "dvalue": "1000", "dmax": "", "min_order": "",
        "created_at": str(ms(NOW)), "day": day, "week": week, "utc_off": "0",
        "status": "active", "key": "k", "campaign": ""})
    g = api.get(f"/v1/redemptions/{oid}").json()
    assert g["source"] == "redis" and g["discount"] == 500 and g["status"] == "active"
    rev = api.post(f"/v1/redemptions/{oid}/reverse", headers={"X-Redeemd-Now": NOW})
    assert rev.status_code == 200, rev.text
    assert api.get(f"/v1/redemptions/{oid}").json()["status"] == "reversed"
    # the user's counts are one field now, with the use given back
    assert r.hmget(uk, "t:old", "d:old", "w:old") == [None, None, None]
    assert r.hget(uk, "u:old") == f"1:{day}:1:{week}:1"
    assert api.redeem(c["code"], user="old", now=NOW).status_code == 201
    assert r.hget(uk, "u:old") == f"2:{day}:2:{week}:2"
    # a record of 0.1 already reversed stays reversed
    xid = f"rdm_{b[1:5]}_" + "b" * 20
    r.hset(f"{b}:r:{xid}", mapping={
        "code": c["code"], "user": "x", "amount": "100", "currency": "EUR",
        "dtype": "percent", "dvalue": "10", "created_at": str(ms(NOW)),
        "status": "reversed", "reversed_at": str(ms(NOW) + 1), "reversal_id": "rdm_x"})
    again = api.post(f"/v1/redemptions/{xid}/reverse", headers={"X-Redeemd-Now": NOW})
    assert again.json()["error"]["code"] == "already_reversed"

    # 0.1's idempotency record: "<hex fingerprint>\n<answer>" under a key of its own, the
    # fingerprint a 64-bit FNV-1a of the request's fields (this version keeps 6 of its bytes)
    key = uuid.uuid4().hex
    first = api.redeem(c["code"], user="fp", key=key, now=NOW, order_id="o-fp")
    assert first.status_code == 201
    keyid = api.key.split("_")[1]
    field = hashlib.sha256(f"{c['code']}\0{keyid}\0{key}".encode()).digest()[:12]
    raw = redis.client(decode=False)
    held = [k for k in raw.scan_iter(match=f"{b}:i:*".encode()) if raw.hexists(k, field)]
    assert len(held) == 1
    fp = fingerprint(c["code"], "fp", 10000, "EUR", "o-fp")
    assert raw.hget(held[0], field)[:6].hex() == fp[:12]
    raw.hdel(held[0], field)  # as if this version had never seen the key
    # 0.1's redeem answer had 21 fields (coupon currency and period indexes besides)
    old = ["ok", "0", first.json()["id"], str(ms(NOW)), "percent", "1000", "", "", "EUR",
           "", "1", "4", "", "10000", "EUR", "fp", "o-fp", c["code"], day, week, "0"]
    r.set(f"{b}:i:{c['code']}:{keyid}:{key}", fp + "\n" + json.dumps(old))
    again = api.redeem(c["code"], user="fp", key=key, now=NOW, order_id="o-fp")
    assert again.status_code == 201 and again.content == first.content
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert api.redeem(c["code"], user="zz", key=key, now=NOW).status_code == 409
    assert api.get(f"/v1/coupons/{c['code']}").json()["used"]["total"] == 4


def test_coupons_of_this_version_skip_the_0_1_lookups(stack):
    """A coupon created by this version is marked "v2", and so are a batch's template and a
    hot coupon's shards: no 0.1 count or record can exist for them, so redeem and pay do not
    look any up (three lookups in a hash of every user and one in the keyspace per call;
    bench/README.md). Shown by planting 0.1-shaped data, which an unmarked coupon honours
    (the test above)."""
    from test_batches import batch, codes_of, finished
    from test_vouchers import pay, voucher
    redis, d, api, db = stack
    r = redis.client()
    c = api.create(limits={"per_user": 2})
    ck = next(r.scan_iter(match=f"{{*}}:c:{c['code']}"))
    assert r.hget(ck, "v2") == "1"
    uk = ck.replace(":c:", ":u:")
    r.hset(uk, mapping={"t:old": 2})  # could not exist: 0.1 never saw this coupon
    assert api.redeem(c["code"], user="old", now=NOW).status_code == 201
    assert r.hget(uk, "u:old").startswith("1:")
    # the same for a voucher's payments
    v = voucher(api, 1000, limits={"per_user": 1})
    vk = next(r.scan_iter(match=f"{{*}}:c:{v['code']}"))
    assert r.hget(vk, "v2") == "1"
    r.hset(vk.replace(":c:", ":u:"), mapping={"t:old": 1})
    assert pay(api, v["code"], 100, user="old").status_code == 201
    # a batch's codes read the mark through their template
    b = batch(api, 2).json()
    assert finished(api, b["id"])["state"] == "done"
    code = codes_of(api, b["id"])[0]
    bk = next(r.scan_iter(match=f"{{*}}:c:{code}"))
    assert r.hget(bk, "v2") is None and r.hget(bk, "t")
    assert r.hget(bk.split(":c:")[0] + ":t:" + r.hget(bk, "t"), "v2") == "1"
    # a hot coupon's shards carry it too
    h = api.create(shards=2, limits={"total": 10})
    assert api.redeem(h["code"], user="h", now=NOW).status_code == 201
    shards = list(r.scan_iter(match=f"{{*}}:s:{h['code']}"))
    assert shards and all(r.hget(k, "v2") == "1" for k in shards)
