"""GET /v1/stats: counts by status, kind and campaign, uses per hour for 48 hours, top
coupons and voucher money, all from the ledger and the coupons mirror. The clock is
injected, so every figure is known in advance."""
import uuid

from conftest import unique_code
from test_ledger import drained

T0 = "2030-03-10T09:15:00Z"      # redemptions happen at 09:15 and 11:40
T1 = "2030-03-10T11:40:00Z"
NOW = "2030-03-10T12:30:00Z"     # the stats are asked for at 12:30


def test_stats_equal_what_was_created_and_used(stack):
    redis, d, api, conninfo = stack
    api.now = "2030-03-01T00:00:00Z"  # this test's clock: every date in it is after
    a1 = api.create(campaign="spring", limits={"total": 2})
    a2 = api.create(campaign="spring")
    b1 = api.create(campaign="summer", expires_at="2030-03-10T12:00:00Z")
    api.create(campaign="summer", starts_at="2030-04-01T00:00:00Z")  # scheduled, never used
    off = api.create()
    assert api.post(f"/v1/coupons/{off['code']}/disable").status_code == 200

    def redeem(code, user, now):
        r = api.redeem(code, user=user, now=now)
        assert r.status_code == 201, r.text
        return r.json()["id"]
    redeem(a1["code"], "u1", T0)
    redeem(a1["code"], "u2", T1)                      # a1 now exhausted (total 2)
    gone = redeem(a2["code"], "u1", T1)
    api.post(f"/v1/redemptions/{gone}/reverse", headers={"X-Redeemd-Now": T1})
    redeem(a2["code"], "u3", T1)
    redeem(b1["code"], "u4", T0)                      # b1 expired by NOW
    assert api.redeem(a1["code"], user="u9", now=T1).status_code == 422  # a rejection

    v = api.post("/v1/coupons", {"kind": "voucher", "code": unique_code("V"), "balance": 1000,
                                 "currency": "EUR", "campaign": "gift"}).json()
    hdr = {"Idempotency-Key": uuid.uuid4().hex, "X-Redeemd-Now": T1}
    p = api.post(f"/v1/vouchers/{v['code']}/pay", {"amount": 300, "currency": "EUR",
                                                  "user_id": "u5"}, headers=hdr).json()
    api.post(f"/v1/redemptions/{p['id']}/reverse", {"amount": 100},
             headers={"Idempotency-Key": uuid.uuid4().hex, "X-Redeemd-Now": T1})
    api.post(f"/v1/vouchers/{v['code']}/recharge", {"amount": 50},
             headers={"Idempotency-Key": uuid.uuid4().hex})
    drained(d)

    r = api.get("/v1/stats", headers={"X-Redeemd-Now": NOW})
    assert r.status_code == 200, r.text
    s = r.json()
    assert s["as_of"] == "2030-03-10T12:30:00Z" and s["outbox_backlog"] == 0
    c = s["coupons"]
    assert c["total"] == 6 and c["by_kind"] == {"discount": 5, "voucher": 1}
    assert c["by_status"] == {"active": 2, "scheduled": 1, "exhausted": 1, "expired": 1,
                              "disabled": 1, "archived": 0}
    assert (c["used"], c["unused"]) == (4, 2)
    camp = {x["campaign"]: x for x in s["campaigns"]}
    assert set(camp) == {"spring", "summer", "gift"}
    assert camp["spring"]["coupons"] == 2 and camp["spring"]["uses"] == 3
    assert camp["spring"]["exhausted"] == 1 and camp["spring"]["active"] == 1
    assert camp["summer"]["expired"] == 1 and camp["summer"]["uses"] == 1
    hours = s["per_hour"]
    assert len(hours) == 48 and hours[-1]["hour"] == "2030-03-10T12:00:00Z"
    by_hour = {h["hour"]: h for h in hours}
    assert by_hour["2030-03-10T09:00:00Z"]["redemptions"] == 2
    assert by_hour["2030-03-10T11:00:00Z"] == {
        "hour": "2030-03-10T11:00:00Z", "redemptions": 3, "rejected": 1, "reversals": 1,
        "payments": 1}
    assert sum(h["redemptions"] for h in hours) == 5
    top = s["top_coupons"]
    assert top[0] == {"code": a1["code"], "kind": "discount", "uses": 2}
    assert {t["code"] for t in top} == {a1["code"], a2["code"], b1["code"], v["code"]}
    assert s["vouchers"] == {"count": 1, "loaded": 1050, "spent": 300, "refunded": 100,
                             "outstanding": 850}
    # a day later the morning's uses are still within the 48 hours; later they are not
    later = api.get("/v1/stats", headers={"X-Redeemd-Now": "2030-03-13T12:30:00Z"}).json()
    assert sum(h["redemptions"] for h in later["per_hour"]) == 0


def test_stats_scopes(api, keys, daemon):
    from conftest import Api
    assert Api(daemon.url, keys["redeem"]).get("/v1/stats").status_code == 403
    assert Api(daemon.url, keys["fraud"]).get("/v1/stats").status_code == 200
