"""Every bad input gets a clear 4xx naming the field, and the daemon stays healthy."""
import socket

import pytest
import requests

GOOD_REDEEM = {"code": "X-NONE", "user_id": "u1", "order_amount": 1000, "currency": "EUR"}
GOOD_COUPON = {"discount": {"type": "percent", "value": 1000}, "currency": "EUR"}


def assert_invalid(r, field, status=400):
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] == "invalid_request", err
    assert err["details"]["field"] == field, err
    assert err["request_id"] == r.headers["X-Request-Id"]


def with_(base, **changes):
    out = dict(base)
    for k, v in changes.items():
        if v is ...:
            out.pop(k, None)
        else:
            out[k] = v
    return out


BAD_VALUES = [  # (field, value) for redeem and validate bodies
    ("code", 5), ("code", None), ("code", ""), ("code", "a b"), ("code", "x" * 65),
    ("code", ["A"]), ("user_id", 7), ("user_id", ""), ("user_id", "u" * 129),
    ("user_id", "a\u0001b"), ("order_amount", 0), ("order_amount", -1),
    ("order_amount", 1.5), ("order_amount", 10.0), ("order_amount", "100"),
    ("order_amount", True), ("order_amount", 10**15 + 1), ("order_amount", 2**63),
    ("order_amount", 10**30), ("currency", "EU"), ("currency", "E1R"), ("currency", 978),
    ("order_id", 12), ("order_id", ""), ("metadata", []), ("metadata", {"k": 1}, "metadata.k"),
    ("surprise", 1),
]


@pytest.mark.parametrize("path", ["/v1/validate", "/v1/redemptions"])
@pytest.mark.parametrize("case", BAD_VALUES, ids=lambda c: f"{c[0]}={c[1]!r}"[:40])
def test_checkout_fields(api, path, case):
    field, value = case[0], case[1]
    r = api.post(path, with_(GOOD_REDEEM, **{field: value}),
                 headers={"Idempotency-Key": "k-validation"})
    assert_invalid(r, case[2] if len(case) > 2 else field)


@pytest.mark.parametrize("path", ["/v1/validate", "/v1/redemptions"])
@pytest.mark.parametrize("missing", ["code", "user_id", "order_amount", "currency"])
def test_checkout_required(api, path, missing):
    r = api.post(path, with_(GOOD_REDEEM, **{missing: ...}), headers={"Idempotency-Key": "k"})
    assert_invalid(r, missing)


COUPON_BAD = [
    ({"discount": {"type": "percent", "value": 10001}}, "discount.value"),
    ({"discount": {"type": "percent", "value": 0}}, "discount.value"),
    ({"discount": {"type": "percent", "value": -100}}, "discount.value"),
    ({"discount": {"type": "percent", "value": 12.5}}, "discount.value"),
    ({"discount": {"type": "fixed", "value": 10**15 + 1}}, "discount.value"),
    ({"discount": {"type": "fixed", "value": 10**25}}, "discount.value"),
    ({"discount": {"type": "half", "value": 5}}, "discount.type"),
    ({"discount": {"value": 5}}, "discount.type"),
    ({"discount": {"type": "percent"}}, "discount.value"),
    ({"discount": {"type": "percent", "value": 5, "max_amount": 0}}, "discount.max_amount"),
    ({"discount": {"type": "percent", "value": 5, "min_order": -1}}, "discount.min_order"),
    ({"discount": {"type": "percent", "value": 5, "cap": 1}}, "discount.cap"),
    ({"discount": "10%"}, "discount"),
    ({"currency": "EURO"}, "currency"),
    ({"starts_at": "yesterday"}, "starts_at"),
    ({"expires_at": "2020-01-01T00:00:00Z"}, "expires_at"),
    ({"expires_at": "2030-02-30T00:00:00Z"}, "expires_at"),
    ({"expires_in_days": 0}, "expires_in_days"),
    ({"expires_in_days": 3651}, "expires_in_days"),
    ({"expires_in_days": "7"}, "expires_in_days"),
    ({"utc_offset_minutes": 900}, "utc_offset_minutes"),
    ({"limits": {"total": 0}}, "limits.total"),
    ({"limits": {"per_user": -2}}, "limits.per_user"),
    ({"limits": {"per_user_daily": 1.5}}, "limits.per_user_daily"),
    ({"limits": {"per_user_weekly": 10**10}}, "limits.per_user_weekly"),
    ({"limits": {"monthly": 1}}, "limits.monthly"),
    ({"limits": []}, "limits"),
    ({"campaign": 5}, "campaign"),
    ({"tags": "VIP"}, "tags"),
    ({"tags": ["ok", ""]}, "tags[1]"),
    ({"metadata": {"a": {"b": "c"}}}, "metadata.a"),
    ({"code": "bad code"}, "code"),
    ({"code": "-LEADING"}, "code"),
    ({"kind": "points"}, "kind"),
    ({"owner": "me"}, "owner"),
]


@pytest.mark.parametrize("change,field", COUPON_BAD)
def test_coupon_create_fields(api, change, field):
    body = dict(GOOD_COUPON)
    if "discount" in change and isinstance(change["discount"], dict):
        body["discount"] = change["discount"]
        change = {k: v for k, v in change.items() if k != "discount"}
    elif "discount" in change:
        body["discount"] = change.pop("discount")
    body.update(change)
    assert_invalid(api.post("/v1/coupons", body), field)


@pytest.mark.parametrize("change,field", [
    ({"limits": {"total": 0}}, "limits.total"),
    ({"discount": {"value": 20000}}, "discount.value"),
    ({"code": "NEW"}, "code"),
    ({"kind": "voucher"}, "kind"),
    ({"starts_at": "2031-01-01T00:00:00Z", "expires_at": "2030-01-01T00:00:00Z"}, "expires_at"),
    ({"nonsense": True}, "nonsense"),
    ({}, "body"),
])
def test_coupon_patch_fields(api, change, field):
    c = api.create()
    assert_invalid(api.patch(f"/v1/coupons/{c['code']}", change), field)


def test_malformed_bodies(api):
    for raw in [b"{", b"not json", b"[1,2]", b'"str"', b"{\"a\":1,\"a\":2}", b""]:
        assert_invalid(api.post("/v1/validate", data=raw), "body")
    # invalid UTF-8 inside a string
    assert_invalid(api.post("/v1/validate", data=b'{"code":"\xff\xfe","user_id":"u"}'), "body")
    # a NUL escape is refused too
    assert_invalid(api.post("/v1/validate", data=b'{"code":"A\\u0000B"}'), "body")


def test_wrong_content_type(api):
    r = api.post("/v1/validate", data=b"code=X", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415, r.text
    err = r.json()["error"]
    assert err["code"] == "unsupported_media_type" and err["details"]["field"] == "Content-Type"
    for ok in ("application/json; charset=utf-8", "Application/JSON"):
        r = api.post("/v1/validate", data=b"{}", headers={"Content-Type": ok})
        assert r.status_code == 400 and r.json()["error"]["details"]["field"] != "Content-Type"
    r = api.post("/v1/validate", data=b"{}", headers={"Content-Type": "application/jsonx"})
    assert r.status_code == 415


def test_body_over_limit(api, daemon):
    big = b'{"code":"' + b"A" * 70000 + b'"}'
    r = api.post("/v1/validate", data=big)
    assert r.status_code == 413
    err = r.json()["error"]
    assert err["code"] == "payload_too_large" and err["details"]["field"] == "body"
    # far beyond the limit: the same answer, read by the client (the server drains what it
    # will not use before it closes, so the client sees the 413, not a reset)
    r = requests.post(daemon.url + "/v1/validate", data=b"x" * (2 * 1024 * 1024),
                      headers={"Content-Type": "application/json"}, timeout=10)
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"
    assert r.headers["Connection"] == "close"
    assert requests.get(daemon.url + "/healthz", timeout=5).status_code == 200


def test_headers_over_limit(daemon):
    r = requests.get(daemon.url + "/healthz", headers={"X-Big": "a" * 20000}, timeout=10)
    assert r.status_code == 431 and r.json()["error"]["code"] == "headers_too_large"
    assert r.json()["error"]["details"]["limit"] == 16384
    many = {f"X-F{i}": "v" for i in range(70)}
    r = requests.get(daemon.url + "/healthz", headers=many, timeout=10)
    assert r.status_code == 431 and r.json()["error"]["details"]["max_fields"] == 64
    assert requests.get(daemon.url + "/healthz", timeout=5).status_code == 200


def test_idempotency_key_rules(api):
    body = dict(GOOD_REDEEM)
    r = api.post("/v1/redemptions", body)
    assert r.status_code == 400 and r.json()["error"]["code"] == "idempotency_key_required"
    assert_invalid(api.post("/v1/redemptions", body, headers={"Idempotency-Key": "a b"}),
                   "Idempotency-Key")
    assert_invalid(api.post("/v1/redemptions", body, headers={"Idempotency-Key": "k" * 256}),
                   "Idempotency-Key")


def test_auth(daemon, keys):
    url = daemon.url + "/v1/coupons/ANY"
    assert requests.get(url, timeout=5).status_code == 401
    for bad in ["Bearer nope", "Basic abc", "Bearer rdk_aaaaaaaa_" + "b" * 32, ""]:
        r = requests.get(url, headers={"Authorization": bad}, timeout=5)
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    def call(method, path, key, body=None):
        return requests.request(method, daemon.url + path, json=body, timeout=5,
                                headers={"Authorization": f"Bearer {keys[key]}",
                                         "Idempotency-Key": "auth-test"})
    assert call("POST", "/v1/coupons", "redeem", GOOD_COUPON).status_code == 403
    assert call("POST", "/v1/coupons", "fraud", GOOD_COUPON).status_code == 403
    assert call("POST", "/v1/redemptions", "admin", GOOD_REDEEM).status_code == 403
    assert call("POST", "/v1/validate", "fraud", GOOD_REDEEM).status_code == 403
    assert call("GET", "/v1/coupons/ANY", "fraud").status_code == 404  # fraud may read
    assert call("GET", "/v1/coupons/ANY", "redeem").status_code == 403
    r = call("POST", "/v1/coupons", "redeem", GOOD_COUPON)
    assert r.json()["error"]["code"] == "forbidden"


def test_routes(api, daemon):
    r = api.get("/v1/nothing")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = api.req("DELETE", "/v1/coupons/ABC")
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"
    r = api.get("/v1/coupons/not a code")
    assert r.status_code == 404 and r.json()["error"]["code"] == "coupon_not_found"
    r = api.get("/v1/redemptions/rdm_9999_zzzzzzzzzzzzzzzzzzzz")
    assert r.status_code == 404 and r.json()["error"]["code"] == "redemption_not_found"


def test_request_id(api):
    r = api.get("/healthz", headers={"X-Request-Id": "trace-123"})
    assert r.headers["X-Request-Id"] == "trace-123"
    r = api.get("/healthz", headers={"X-Request-Id": "bad\tid"})
    assert r.headers["X-Request-Id"] != "bad\tid" and len(r.headers["X-Request-Id"]) == 24
    r = api.post("/v1/validate", {"nope": 1})
    assert r.json()["error"]["request_id"] == r.headers["X-Request-Id"]


def test_garbage_on_the_wire(daemon):
    for junk in [b"\x00\x01\x02\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n", b"POST /v1/validate HTTP/1.1\r\n"
                 b"Content-Length: -5\r\n\r\n", b"A" * 100000]:
        s = socket.create_connection(("127.0.0.1", daemon.port), timeout=5)
        try:
            s.sendall(junk)
            s.shutdown(socket.SHUT_WR)
            s.recv(4096)
        except OSError:
            pass
        finally:
            s.close()
    assert requests.get(daemon.url + "/healthz", timeout=5).status_code == 200


def test_still_healthy_after_everything(daemon):
    assert requests.get(daemon.url + "/readyz", timeout=5).status_code == 200


def test_reverse_and_status_bodies(api):
    c = api.create()
    rid = api.redeem(c["code"]).json()["id"]
    assert_invalid(api.post(f"/v1/redemptions/{rid}/reverse", {"amount": 5}), "amount")
    assert_invalid(api.post(f"/v1/redemptions/{rid}/reverse", data=b"{"), "body")
    assert_invalid(api.post(f"/v1/redemptions/{rid}/reverse",
                            headers={"Idempotency-Key": "sp ace"}), "Idempotency-Key")
    assert_invalid(api.post(f"/v1/coupons/{c['code']}/enable", {"why": 1}), "why")
    assert api.get(f"/v1/redemptions/{rid}").json()["status"] == "active"
