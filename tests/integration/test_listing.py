"""GET /v1/coupons: the coupons mirror with live figures from the ledger; filters, cursor
pages, a CSV export, and reads that change nothing."""
import csv
import io
import uuid

from conftest import unique_code
from test_ledger import drained, rows

NOW = "2030-05-01T12:00:00Z"


def codes(api, **params):
    """Every code the listing gives for params, walking the pages."""
    out, cursor = [], None
    for _ in range(100):
        q = dict(params, limit=2)
        if cursor:
            q["cursor"] = cursor
        r = api.get("/v1/coupons?" + "&".join(f"{k}={v}" for k, v in q.items()),
                    headers={"X-Redeemd-Now": NOW})
        assert r.status_code == 200, r.text
        j = r.json()
        out += [c["code"] for c in j["data"]]
        if not j["has_more"]:
            assert j["next_cursor"] is None
            return out
        cursor = j["next_cursor"]
    raise AssertionError("pagination did not end")


def test_filters_pages_and_csv(stack):
    redis, d, api, conninfo = stack
    api.now = "2030-03-01T00:00:00Z"  # this test's clock: every date in it is after
    p = "L" + uuid.uuid4().hex[:6].upper()
    a = api.create(code=f"{p}-A", campaign="spring, early", tags=["VIP"], limits={"total": 1},
                   expires_at="2030-06-01T00:00:00Z")
    b = api.create(code=f"{p}-B", campaign="spring, early", tags=["Regular"])
    c = api.create(code=f"{p}-C", campaign="summer", expires_at="2030-04-01T00:00:00Z")
    dd = api.create(code=f"{p}-D", campaign="summer", tags=["VIP", "Premium"])
    e = api.create(code=f"{p}-E", starts_at="2030-06-01T00:00:00Z")
    v = api.post("/v1/coupons", {"kind": "voucher", "code": f"{p}-V", "balance": 500,
                                 "currency": "EUR"}).json()
    assert api.redeem(a["code"], now="2030-04-15T00:00:00Z").status_code == 201  # exhausted
    rid = api.redeem(b["code"], user="x", now="2030-04-15T00:00:00Z").json()["id"]
    api.post(f"/v1/redemptions/{rid}/reverse")                            # b: no use left
    assert api.redeem(b["code"], user="y", now="2030-04-15T00:00:00Z").status_code == 201
    assert api.post(f"/v1/coupons/{dd['code']}/disable").status_code == 200
    assert api.post(f"/v1/coupons/{b['code']}/share").status_code == 200
    pay = api.post(f"/v1/vouchers/{v['code']}/pay", {"amount": 200, "currency": "EUR",
                                                    "user_id": "z"},
                   headers={"Idempotency-Key": uuid.uuid4().hex, "X-Redeemd-Now": NOW})
    assert pay.status_code == 201
    drained(d)

    all_codes = [x["code"] for x in (a, b, c, dd, e, v)]
    assert codes(api, prefix=p.lower()) == sorted(all_codes)
    assert codes(api, prefix=p, status="exhausted") == [a["code"]]
    assert codes(api, prefix=p, status="valid") == sorted([b["code"], v["code"]])
    assert codes(api, prefix=p, status="expired") == [c["code"]]
    assert codes(api, prefix=p, status="disabled") == [dd["code"]]
    assert codes(api, prefix=p, status="scheduled") == [e["code"]]
    assert codes(api, prefix=p, status="used") == sorted([a["code"], b["code"], v["code"]])
    assert codes(api, prefix=p, status="unused") == sorted([c["code"], dd["code"], e["code"]])
    assert codes(api, prefix=p, campaign="summer") == sorted([c["code"], dd["code"]])
    assert codes(api, prefix=p, tag="VIP") == sorted([a["code"], dd["code"]])
    assert codes(api, prefix=p, kind="voucher") == [v["code"]]
    assert codes(api, prefix=p, shared="true") == [b["code"]]
    assert len(codes(api, prefix=p, shared="false")) == 5
    assert codes(api, prefix=p, expires_from="2030-05-01T00:00:00Z",
                 expires_to="2030-07-01T00:00:00Z") == [a["code"]]
    assert codes(api, prefix=p, created_from="2000-01-01T00:00:00Z") == sorted(all_codes)
    assert codes(api, prefix=p, created_to="2000-01-01T00:00:00Z") == []

    page = api.get(f"/v1/coupons?prefix={p}&kind=voucher",
                   headers={"X-Redeemd-Now": NOW}).json()["data"][0]
    assert page == {"code": v["code"], "kind": "voucher", "status": "active", "campaign": None,
                    "tags": [], "used": 1, "shares": 0, "created_at": page["created_at"],
                    "expires_at": None, "balance": 300, "currency": "EUR", "batch": None}
    one = api.get(f"/v1/coupons?prefix={p}&tag=VIP&status=exhausted").json()["data"][0]
    assert one["tags"] == ["VIP"] and one["used"] == 1 and one["campaign"] == "spring, early"

    r = api.get(f"/v1/coupons?prefix={p}", headers={"Accept": "text/csv",
                                                    "X-Redeemd-Now": NOW})
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/csv")
    table = list(csv.reader(io.StringIO(r.text)))
    assert table[0] == ["code", "kind", "status", "campaign", "tags", "used", "shares",
                        "created_at", "expires_at", "balance", "currency", "batch", "cursor"]
    assert [row[0] for row in table[1:]] == sorted(all_codes)
    row_a = table[1]
    assert row_a[3] == "spring, early" and row_a[4] == '["VIP"]' and row_a[2] == "exhausted"
    assert row_a[-1] == a["code"]

    # reads change nothing: no ledger row, the same answer twice
    before = rows(conninfo, "SELECT count(*) FROM transactions")[0][0]
    first = api.get(f"/v1/coupons?prefix={p}", headers={"X-Redeemd-Now": NOW}).json()
    again = api.get(f"/v1/coupons?prefix={p}", headers={"X-Redeemd-Now": NOW}).json()
    assert first == again
    assert rows(conninfo, "SELECT count(*) FROM transactions")[0][0] == before


def test_bad_parameters(api):
    for q, field in [("status=gone", "status"), ("kind=gift", "kind"), ("limit=0", "limit"),
                     ("limit=1001", "limit"), ("prefix=a%25b", "prefix"), ("shared=yes", "shared"),
                     ("created_from=yesterday", "created_from"), ("colour=red", "colour"),
                     ("cursor=a'b", "cursor")]:
        r = api.get(f"/v1/coupons?{q}")
        assert r.status_code == 400, (q, r.text)
        assert r.json()["error"]["details"]["field"] == field


def test_scopes(api, keys, daemon):
    from conftest import Api
    assert Api(daemon.url, keys["redeem"]).get("/v1/coupons").status_code == 403
    assert Api(daemon.url, keys["fraud"]).get("/v1/coupons?limit=1").status_code == 200
