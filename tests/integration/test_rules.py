"""Business rules over HTTP: every rejection code reached by a real scenario, each limit
tripping with its own reason, PATCH semantics, period roll-over through the injected clock,
idempotency and reversal. The clock is injected with X-Redeemd-Now (test_clock), so nothing
here depends on today's date."""
import uuid

from conftest import unique_code

# A fixed Wednesday; the ISO week runs Monday 2030-01-07 .. Sunday 2030-01-13.
WED = "2030-01-09T10:00:00Z"
WED_LATE = "2030-01-09T23:59:59.999Z"
THU = "2030-01-10T00:00:00Z"
SUN = "2030-01-13T23:59:59Z"
NEXT_MON = "2030-01-14T00:00:00Z"


def err(r):
    return r.json()["error"]["code"]


def test_discount_math(api):
    c = api.create(discount={"type": "percent", "value": 1000, "max_amount": 500})
    v = api.validate(c["code"], amount=2599).json()
    assert v["valid"] and v["discount"] == 259  # 10 % of 25.99 rounds down
    assert api.validate(c["code"], amount=99999).json()["discount"] == 500  # capped
    c = api.create(discount={"type": "fixed", "value": 1500})
    assert api.validate(c["code"], amount=1000).json()["discount"] == 1000  # never > order
    r = api.redeem(c["code"], amount=4000)
    assert r.status_code == 201 and r.json()["discount"] == 1500
    c = api.create(discount={"type": "percent", "value": 3333}, currency=None)
    assert api.validate(c["code"], amount=100, currency="JPY").json()["discount"] == 33


def test_codes_are_case_insensitive_and_generated(api):
    code = unique_code()
    r = api.post("/v1/coupons", {"code": code.lower(), "discount": {"type": "percent",
                                                                    "value": 500}})
    assert r.status_code == 201 and r.json()["code"] == code
    r = api.post("/v1/coupons", {"code": code, "discount": {"type": "percent", "value": 500}})
    assert r.status_code == 409 and err(r) == "coupon_exists"
    gen = {api.post("/v1/coupons", {"discount": {"type": "percent", "value": 5}}).json()["code"]
           for _ in range(20)}
    assert len(gen) == 20
    for g in gen:
        assert len(g) == 13 and not set(g) & set("01OIL")
    assert api.validate(next(iter(gen)).lower()).json()["valid"]


def test_every_rejection_reason(api):
    api.now = "2029-12-01T00:00:00Z"  # this test's clock: every date in it is after
    cases = []
    c = api.create(limits={"total": 1})
    assert api.redeem(c["code"], user="a").status_code == 201
    cases.append((c["code"], "limit_total_reached", {}))
    c = api.create(limits={"per_user": 1})
    api.redeem(c["code"], user="a")
    cases.append((c["code"], "limit_user_reached", {}))
    c = api.create(limits={"per_user_daily": 1})
    api.redeem(c["code"], user="a", now=WED)
    cases.append((c["code"], "limit_user_daily_reached", {"now": WED_LATE}))
    c = api.create(limits={"per_user_weekly": 1})
    api.redeem(c["code"], user="a", now=WED)
    cases.append((c["code"], "limit_user_weekly_reached", {"now": SUN}))
    c = api.create(starts_at="2031-01-01T00:00:00Z")
    cases.append((c["code"], "coupon_not_started", {"now": WED}))
    c = api.create(expires_at="2030-02-01T00:00:00Z")
    cases.append((c["code"], "coupon_expired", {"now": "2030-02-01T00:00:00Z"}))
    c = api.create()
    api.post(f"/v1/coupons/{c['code']}/disable")
    cases.append((c["code"], "coupon_disabled", {}))
    c = api.create(discount={"type": "fixed", "value": 100, "min_order": 5000})
    cases.append((c["code"], "min_order_not_met", {"amount": 4999}))
    c = api.create(currency="USD")
    cases.append((c["code"], "currency_mismatch", {}))
    for code, reason, kw in cases:
        r = api.redeem(code, user="a", **kw)
        assert r.status_code == 422 and err(r) == reason, (reason, r.text)
        v = api.validate(code, user="a", **kw)
        assert v.status_code == 200 and v.json() == {**v.json(), "valid": False, "reason": reason}
    r = api.redeem("NO-SUCH-" + uuid.uuid4().hex[:8].upper())
    assert r.status_code == 404 and err(r) == "coupon_not_found"
    assert api.validate("NO-SUCH-CODE").status_code == 404


def test_limits_trip_in_order(api):
    c = api.create(limits={"total": 10, "per_user": 5, "per_user_daily": 2,
                           "per_user_weekly": 3})
    code = c["code"]
    day1, day2, day3 = "2030-01-07T09:00:00Z", "2030-01-08T09:00:00Z", "2030-01-09T09:00:00Z"
    assert api.redeem(code, now=day1).status_code == 201
    r = api.redeem(code, now=day1)
    assert r.status_code == 201
    assert r.json()["remaining"] == {"total": 8, "user": 3, "user_daily": 0, "user_weekly": 1}
    r = api.redeem(code, now=day1)
    assert err(r) == "limit_user_daily_reached"
    assert r.json()["error"]["details"]["resets_at"] == "2030-01-08T00:00:00Z"
    assert api.redeem(code, now=day2).status_code == 201
    r = api.redeem(code, now=day3)
    assert err(r) == "limit_user_weekly_reached"
    assert r.json()["error"]["details"]["resets_at"] == "2030-01-14T00:00:00Z"
    # next ISO week: weekly and daily are open again, lifetime counts continue
    assert api.redeem(code, now=NEXT_MON).status_code == 201
    r = api.redeem(code, now=NEXT_MON)
    assert r.status_code == 201 and r.json()["remaining"]["user"] == 0
    assert err(api.redeem(code, now="2030-01-15T09:00:00Z")) == "limit_user_reached"
    for i in range(5):
        assert api.redeem(code, user=f"other{i}", now=NEXT_MON).status_code == 201
    assert err(api.redeem(code, user="late", now=NEXT_MON)) == "limit_total_reached"
    assert api.get(f"/v1/coupons/{code}").json()["used"]["total"] == 10


def test_daily_rollover_at_midnight_and_offset(api):
    c = api.create(limits={"per_user_daily": 1})
    assert api.redeem(c["code"], now=WED_LATE).status_code == 201
    assert err(api.redeem(c["code"], now=WED_LATE)) == "limit_user_daily_reached"
    assert api.redeem(c["code"], now=THU).status_code == 201  # one ms later: a new day
    # UTC+05:30: the local day starts at 18:30 UTC
    c = api.create(limits={"per_user_daily": 1}, utc_offset_minutes=330)
    assert api.redeem(c["code"], now="2030-01-09T18:29:59Z").status_code == 201
    r = api.redeem(c["code"], now="2030-01-09T18:29:59.500Z")
    assert r.json()["error"]["details"]["resets_at"] == "2030-01-09T18:30:00Z"
    assert api.redeem(c["code"], now="2030-01-09T18:30:00Z").status_code == 201


def test_year_end_week(api):
    # 2026-12-31 (Thursday) and 2027-01-01 (Friday) are the same ISO week (2026-W53).
    c = api.create(limits={"per_user_weekly": 1})
    assert api.redeem(c["code"], now="2026-12-31T12:00:00Z").status_code == 201
    assert err(api.redeem(c["code"], now="2027-01-03T23:00:00Z")) == "limit_user_weekly_reached"
    assert api.redeem(c["code"], now="2027-01-04T00:00:00Z").status_code == 201


def test_patch_limits_compare_with_usage(api):
    c = api.create(limits={"total": 5})
    code = c["code"]
    for i in range(3):
        assert api.redeem(code, user=f"u{i}").status_code == 201
    r = api.patch(f"/v1/coupons/{code}", {"limits": {"total": 2}})
    assert r.status_code == 200 and r.json()["status"] == "exhausted"
    assert err(api.redeem(code, user="x")) == "limit_total_reached"
    r = api.patch(f"/v1/coupons/{code}", {"limits": {"total": 4}})
    assert r.json()["used"]["total"] == 3 and r.json()["remaining"]["total"] == 1
    assert api.redeem(code, user="x").status_code == 201
    assert err(api.redeem(code, user="y")) == "limit_total_reached"  # raising did not reset
    r = api.patch(f"/v1/coupons/{code}", {"limits": {"total": None}, "campaign": "spring"})
    assert r.json()["limits"]["total"] is None and r.json()["campaign"] == "spring"
    assert api.redeem(code, user="y").status_code == 201
    assert api.patch("/v1/coupons/NOT-THERE", {"campaign": "x"}).status_code == 404


def test_per_user_counts_are_per_coupon(api):
    a = api.create(limits={"per_user": 1})
    b = api.create(limits={"per_user": 1})
    assert api.redeem(b["code"], user="bob").status_code == 201
    assert api.redeem(a["code"], user="bob").status_code == 201
    assert err(api.redeem(a["code"], user="bob")) == "limit_user_reached"
    assert api.redeem(a["code"], user="carol").status_code == 201


def test_disable_enable(api):
    c = api.create()
    r = api.post(f"/v1/coupons/{c['code']}/disable")
    assert r.status_code == 200 and r.json()["status"] == "disabled"
    assert err(api.redeem(c["code"])) == "coupon_disabled"
    assert api.post(f"/v1/coupons/{c['code']}/enable").json()["status"] == "active"
    assert api.redeem(c["code"]).status_code == 201
    assert api.post("/v1/coupons/NOT-THERE/disable").status_code == 404
    r = api.post(f"/v1/coupons/{c['code']}/disable", {"why": "x"})
    assert r.status_code == 400


def test_coupon_view(api):
    api.now = "2029-12-01T00:00:00Z"  # this test's clock: every date in it is after
    c = api.create(limits={"total": 3, "per_user": 1}, campaign="bf", tags=["VIP", "Regular"],
                   metadata={"owner": "growth"}, expires_at="2031-06-30T00:00:00Z")
    g = api.get(f"/v1/coupons/{c['code'].lower()}").json()
    assert g == c
    assert g["tags"] == ["VIP", "Regular"] and g["metadata"] == {"owner": "growth"}
    assert g["expires_at"] == "2031-06-30T00:00:00Z"
    c = api.create(expires_in_days=30)
    assert c["expires_at"] is not None


def test_idempotent_replay_and_reuse(api):
    c = api.create(limits={"total": 5})
    r1 = api.redeem(c["code"], key="same-key", order_id="o-1")
    r2 = api.redeem(c["code"], key="same-key", order_id="o-1")
    assert r1.status_code == r2.status_code == 201
    assert r1.content == r2.content
    assert r2.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in r1.headers
    r3 = api.redeem(c["code"], key="same-key", order_id="o-2")
    assert r3.status_code == 409 and err(r3) == "idempotency_key_reused"
    assert api.get(f"/v1/coupons/{c['code']}").json()["used"]["total"] == 1
    # a rejection is replayed as well, and does not turn into a success later
    d = api.create(limits={"total": 1})
    api.redeem(d["code"], user="first")
    rej = api.redeem(d["code"], user="second", key="rej-key")
    assert err(rej) == "limit_total_reached"
    api.patch(f"/v1/coupons/{d['code']}", {"limits": {"total": 2}})
    again = api.redeem(d["code"], user="second", key="rej-key")
    assert err(again) == "limit_total_reached" and again.headers["Idempotent-Replayed"] == "true"


def test_redemption_read_and_reverse(api, rds):
    c = api.create(limits={"total": 2, "per_user": 1, "per_user_daily": 1,
                           "per_user_weekly": 1})
    code = c["code"]
    r = api.redeem(code, user="rev", now=WED, order_id="ord-9")
    rid = r.json()["id"]
    g = api.get(f"/v1/redemptions/{rid}").json()
    assert g["status"] == "active" and g["order_id"] == "ord-9" and g["discount"] == 1000
    assert g["created_at"] == "2030-01-09T10:00:00Z"
    assert err(api.redeem(code, user="rev", now=WED)) == "limit_user_reached"
    r = api.post(f"/v1/redemptions/{rid}/reverse", headers={"X-Redeemd-Now": WED_LATE})
    assert r.status_code == 200 and r.json()["status"] == "reversed"
    # the use is back: same day, same week, lifetime and global
    assert api.redeem(code, user="rev", now=WED_LATE).status_code == 201
    assert api.get(f"/v1/coupons/{code}").json()["used"]["total"] == 1
    r = api.post(f"/v1/redemptions/{rid}/reverse")
    assert r.status_code == 409 and err(r) == "already_reversed"
    assert r.json()["error"]["details"]["reversal_id"].startswith("rdm_")
    g = api.get(f"/v1/redemptions/{rid}").json()
    assert g["status"] == "reversed" and "reversed_at" in g
    assert api.post("/v1/redemptions/rdm_0001_aaaaaaaaaaaaaaaaaaaa/reverse").status_code == 404
    assert api.post("/v1/redemptions/garbage/reverse").status_code == 404


def test_reverse_in_a_later_period(api):
    c = api.create(limits={"per_user_daily": 1, "per_user": 2})
    rid = api.redeem(c["code"], user="p", now=WED).json()["id"]
    assert api.redeem(c["code"], user="p", now=THU).status_code == 201
    # reversing Wednesday's use on Thursday must not free a Thursday slot
    api.post(f"/v1/redemptions/{rid}/reverse", headers={"X-Redeemd-Now": THU})
    assert err(api.redeem(c["code"], user="p", now=THU)) == "limit_user_daily_reached"
    assert api.redeem(c["code"], user="p", now="2030-01-11T00:00:00Z").status_code == 201


def test_reverse_idempotency_key(api):
    c = api.create()
    rid = api.redeem(c["code"]).json()["id"]
    h = {"Idempotency-Key": "rev-1"}
    a = api.post(f"/v1/redemptions/{rid}/reverse", headers=h)
    b = api.post(f"/v1/redemptions/{rid}/reverse", headers=h)
    assert a.status_code == b.status_code == 200 and a.json() == b.json()
    assert b.headers["Idempotent-Replayed"] == "true"
    assert api.post(f"/v1/redemptions/{rid}/reverse",
                    headers={"Idempotency-Key": "rev-2"}).status_code == 409


def test_outbox_entry_for_every_attempt(api, daemon, pg):
    """Accepted and rejected attempts each leave one entry (shipped to the ledger); a replay
    leaves none."""
    from test_ledger import drained, rows
    c = api.create(limits={"total": 1})
    code = c["code"]
    ok = api.redeem(code, user="o1")
    rej = api.redeem(code, user="o2")
    rep = api.redeem(code, user="o1", key="replay-outbox")
    api.redeem(code, user="o1", key="replay-outbox")  # a replay is not a new attempt
    drained(daemon)
    got = rows(pg.conninfo, "SELECT txn_id, kind, outcome, reason, user_id, order_amount, "
                            "currency FROM transactions WHERE code = %s", code)
    redeems = [g for g in got if g[1] == "redeem"]
    assert len(redeems) == 3
    by_id = {g[0]: g for g in redeems}
    rid = ok.json()["id"]
    assert by_id[rid][2:] == ("accepted", None, "o1", 10000, "EUR")
    assert sorted(g[3] for g in redeems if g[2] == "rejected") == ["limit_total_reached"] * 2
    assert err(rej) == err(rep) == "limit_total_reached"
    assert [g[1] for g in got].count("coupon_create") == 1


def test_lagging_clock_cannot_reopen_a_day(api):
    """A daemon whose clock lags another's (around midnight) must not reset a daily count
    that a faster clock has already moved to the next day."""
    c = api.create(limits={"per_user_daily": 1})
    assert api.redeem(c["code"], user="skew", now="2030-01-10T00:00:00.100Z").status_code == 201
    r = api.redeem(c["code"], user="skew", now="2030-01-09T23:59:59.900Z")  # the lagging one
    assert r.status_code == 422 and err(r) == "limit_user_daily_reached"
    assert r.json()["error"]["details"]["resets_at"] == "2030-01-11T00:00:00Z"
    assert api.redeem(c["code"], user="skew", now="2030-01-11T00:00:00Z").status_code == 201


def test_replay_in_later_slices(api):
    """An idempotency record is found for a whole lifetime (idempotency_ttl_s, a day here)
    whatever the 12-hour slice it went into: the lookup reads the slice of now and the two
    before (slices start at 00:00 and 12:00 UTC). Three slices on, it is not read, and the
    key makes a new use."""
    c = api.create(limits={"per_user": 5})
    first = api.redeem(c["code"], user="s", key="slice-key", now="2030-01-09T11:59:59Z")
    assert first.status_code == 201
    for later in ("2030-01-09T12:00:00Z", "2030-01-10T00:00:00Z", "2030-01-10T11:59:58Z"):
        again = api.redeem(c["code"], user="s", key="slice-key", now=later)
        assert again.status_code == 201 and again.content == first.content, later
        assert again.headers["Idempotent-Replayed"] == "true"
    new = api.redeem(c["code"], user="s", key="slice-key", now="2030-01-10T12:00:00Z")
    assert new.status_code == 201 and "Idempotent-Replayed" not in new.headers
    assert new.json()["id"] != first.json()["id"]
    assert api.get(f"/v1/coupons/{c['code']}").json()["used"]["total"] == 2
