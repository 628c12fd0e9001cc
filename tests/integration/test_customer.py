"""The customer behind the checkout: the optional "customer" object of validate, redeem, pay
and reverse, X-Forwarded-For from trusted proxies only, and the ledger keeping the peer's
address beside the customer's, with the fraud filters and views following the customer."""
import psycopg2
import pytest

from conftest import wait_for

NOW = "2031-05-01T12:00:00Z"
CUSTOMER = {"ip": "203.0.113.9", "session_id": "sess-1", "device_id": "dev-9",
            "email_hash": "5d41402abc4b2a76b9719d911017c592"}


def sql(db, q, *args):
    with psycopg2.connect(db) as c, c.cursor() as cur:
        cur.execute(q, args)
        return cur.fetchall()


def rows(db, code, n):
    """The ledger's rows of code once there are n of them."""
    q = ("SELECT kind, outcome, host(client_ip), host(peer_ip), session_id, device_id, "
         "email_hash FROM transactions WHERE code = %s ORDER BY ts, kind")
    wait_for(lambda: len(sql(db, q, code)) >= n, timeout=30, what=f"{n} rows of {code}")
    return sql(db, q, code)


@pytest.fixture()
def cust(stack):
    redis, d, api, db = stack
    api.now = NOW
    return redis, d, api, db


def test_customer_in_the_ledger_and_the_filters(cust):
    redis, d, api, db = cust
    api.create(code="CUST-1", limits={"total": 5})
    r = api.redeem("CUST-1", user="c1", customer=CUSTOMER)
    assert r.status_code == 201, r.text
    rid = r.json()["id"]
    v = api.validate("CUST-1", user="c2")  # no customer: the peer's address, as before
    assert v.status_code == 200
    probe = api.post("/v1/validate", {"code": "CUST-NONE", "user_id": "c3",
                                      "order_amount": 100, "currency": "EUR",
                                      "customer": {"ip": "2001:db8::5"}})
    assert probe.status_code == 404 and probe.json()["error"]["code"] == "coupon_not_found"
    back = api.post(f"/v1/redemptions/{rid}/reverse",
                    {"customer": {"ip": "198.51.100.1", "session_id": "agent-7"}},
                    headers={"Idempotency-Key": "cust-back"})
    assert back.status_code == 200, back.text
    got = rows(db, "CUST-1", 3)
    redeem = [x for x in got if x[0] == "redeem"][0]
    assert redeem[1:] == ("accepted", "203.0.113.9", "127.0.0.1", "sess-1", "dev-9",
                          CUSTOMER["email_hash"]), redeem
    reverse = [x for x in got if x[0] == "reverse"][0]
    assert reverse[2:5] == ("198.51.100.1", "127.0.0.1", "agent-7"), reverse
    created = [x for x in got if x[0] == "coupon_create"][0]
    assert created[2:] == ("127.0.0.1", "127.0.0.1", None, None, None), created
    unknown = rows(db, "CUST-NONE", 1)[0]
    assert unknown[:4] == ("validate", "rejected", "2001:db8::5", "127.0.0.1"), unknown
    # the fraud filters use the customer's address; the rows show both and the context
    page = api.get("/v1/transactions?client_ip=203.0.113.0/24").json()
    assert [t["code"] for t in page["data"]] == ["CUST-1"]
    t = page["data"][0]
    assert (t["client_ip"], t["peer_ip"], t["session_id"], t["device_id"], t["email_hash"]) == \
        ("203.0.113.9", "127.0.0.1", "sess-1", "dev-9", CUSTOMER["email_hash"])
    assert sql(db, "SELECT host(client_ip) FROM rd_ip_failures(now() - interval '100 years', "
                   "now() + interval '100 years') WHERE client_ip = '2001:db8::5'") != []
    csv = api.get("/v1/transactions?client_ip=203.0.113.9", headers={"Accept": "text/csv"})
    assert csv.status_code == 200 and "sess-1" in csv.text and "peer_ip" in csv.text


def test_customer_is_context_not_substance(cust):
    """A retry with other customer details is the same request: the first answer again."""
    redis, d, api, db = cust
    api.create(code="CUST-2")
    first = api.redeem("CUST-2", user="c1", key="cust-2", customer=CUSTOMER)
    again = api.redeem("CUST-2", user="c1", key="cust-2", customer={"ip": "192.0.2.1"})
    assert first.status_code == again.status_code == 201
    assert again.json()["id"] == first.json()["id"]


def test_bad_customers_are_refused(cust):
    redis, d, api, db = cust
    api.create(code="CUST-3")
    bad = [("x", "customer"), ({"ip": "999.1.1.1"}, "customer.ip"),
           ({"ip": "example.com"}, "customer.ip"), ({"ip": ""}, "customer.ip"),
           ({"session_id": "a" * 129}, "customer.session_id"),
           ({"device_id": "tab\there"}, "customer.device_id"),
           ({"email_hash": 5}, "customer.email_hash"), ({"name": "x"}, "customer.name")]
    for customer, field in bad:
        for path, body in (("/v1/validate", {}), ("/v1/redemptions", {})):
            b = {"code": "CUST-3", "user_id": "u", "order_amount": 100, "currency": "EUR",
                 "customer": customer}
            r = api.post(path, b, headers={"Idempotency-Key": "k"})
            assert r.status_code == 400, (customer, r.text)
            assert r.json()["error"]["details"]["field"] == field, (customer, r.text)
    ok = api.redeem("CUST-3", user="u", customer={"session_id": "s" * 128})
    assert ok.status_code == 201, ok.text
    v = api.post("/v1/coupons", {"code": "CUST-V", "kind": "voucher", "balance": 500,
                                 "currency": "EUR"})
    assert v.status_code == 201
    pay = api.post("/v1/vouchers/CUST-V/pay", {"amount": 100, "currency": "EUR",
                                               "user_id": "u", "customer": {"ip": "nope"}},
                   headers={"Idempotency-Key": "p1"})
    assert pay.status_code == 400 and pay.json()["error"]["details"]["field"] == "customer.ip"
    pay = api.post("/v1/vouchers/CUST-V/pay", {"amount": 100, "currency": "EUR",
                                               "user_id": "u", "customer": CUSTOMER},
                   headers={"Idempotency-Key": "p2"})
    assert pay.status_code == 201, pay.text
    assert rows(db, "CUST-V", 2)[-1][2:4] == ("203.0.113.9", "127.0.0.1")


@pytest.mark.daemon_args("--trusted_proxies=127.0.0.0/8")
def test_forwarded_for_from_a_trusted_proxy(cust):
    redis, d, api, db = cust
    api.create(code="CUST-4")

    def redeem(user, xff, customer=None):
        body = {"code": "CUST-4", "user_id": user, "order_amount": 100, "currency": "EUR"}
        if customer:
            body["customer"] = customer
        r = api.post("/v1/redemptions", body,
                     headers={"Idempotency-Key": user, "X-Forwarded-For": xff})
        assert r.status_code == 201, r.text
    # read from the right; what the client wrote before our proxy's entry is not believed
    redeem("x1", "6.6.6.6, 198.51.100.4")
    # our own proxies' entries are skipped
    redeem("x2", "198.51.100.5, 127.0.0.9")
    # not addresses: ignored (the peer's address)
    redeem("x3", "unknown")
    # the body's customer.ip wins over the header
    redeem("x4", "198.51.100.6", {"ip": "192.0.2.44"})
    q = ("SELECT user_id, host(client_ip), host(peer_ip) FROM transactions "
         "WHERE code = 'CUST-4' AND kind = 'redeem'")
    wait_for(lambda: len(sql(db, q)) == 4, timeout=30, what="4 rows")
    got = {r[0]: r[1:] for r in sql(db, q)}
    assert got == {"x1": ("198.51.100.4", "127.0.0.1"), "x2": ("198.51.100.5", "127.0.0.1"),
                   "x3": ("127.0.0.1", "127.0.0.1"), "x4": ("192.0.2.44", "127.0.0.1")}, got


def test_forwarded_for_ignored_without_trusted_proxies(cust):
    redis, d, api, db = cust
    api.create(code="CUST-5")
    r = api.post("/v1/redemptions", {"code": "CUST-5", "user_id": "y", "order_amount": 100,
                                      "currency": "EUR"},
                 headers={"Idempotency-Key": "y", "X-Forwarded-For": "198.51.100.4"})
    assert r.status_code == 201
    got = rows(db, "CUST-5", 2)
    assert [x[2:4] for x in got if x[0] == "redeem"] == [("127.0.0.1", "127.0.0.1")]


def test_schema_notes_for_the_fraud_team(cust):
    """The columns' meaning is in the database, where the fraud team queries (\\d+): every
    column of the ledger has a note, and client_ip's says it is the customer's address."""
    redis, d, api, db = cust
    notes = dict(sql(db, "SELECT a.attname, col_description(a.attrelid, a.attnum) FROM "
                         "pg_attribute a WHERE a.attrelid = 'transactions'::regclass AND "
                         "a.attnum > 0 AND NOT a.attisdropped"))
    assert {c for c, n in notes.items() if not n} == set(), notes
    assert "customer" in notes["client_ip"] and "connected" in notes["peer_ip"]
    views = dict(sql(db, "SELECT c.relname, obj_description(c.oid, 'pg_class') FROM pg_class c "
                         "WHERE c.relname IN ('transactions', 'ip_failures_hourly', "
                         "'user_attempts_hourly')"))
    assert all(views.get(v) for v in ("transactions", "ip_failures_hourly",
                                      "user_attempts_hourly")), views
    fn = sql(db, "SELECT obj_description('rd_ip_failures(timestamptz, timestamptz)'::regprocedure,"
                 " 'pg_proc')")
    assert fn[0][0] and "client_ip" in fn[0][0]
