#!/usr/bin/python3
"""Writes docs/openapi.json, redeemd's OpenAPI 3.1 document, which the daemon serves at
/openapi.json (built in at compile time). Edit this file, run it, commit both:
tests/integration/test_openapi.py fails while the JSON is not what this writes, while a route
the daemon serves is missing here (or one here is not served), and whenever an answer of the
integration tests does not validate against its schema."""
import json
import os

ERRORS = {
    "invalid_request": 400, "idempotency_key_required": 400, "unauthorized": 401,
    "forbidden": 403, "not_found": 404, "coupon_not_found": 404, "redemption_not_found": 404,
    "batch_not_found": 404, "webhook_not_found": 404, "delivery_not_found": 404,
    "method_not_allowed": 405, "request_timeout": 408, "coupon_exists": 409,
    "idempotency_key_reused": 409, "already_reversed": 409, "batch_finished": 409,
    "conflict": 409, "payload_too_large": 413, "unsupported_media_type": 415,
    "expectation_failed": 417, "coupon_not_started": 422, "coupon_expired": 422,
    "coupon_disabled": 422, "limit_total_reached": 422, "limit_user_reached": 422,
    "limit_user_daily_reached": 422, "limit_user_weekly_reached": 422,
    "min_order_not_met": 422, "currency_mismatch": 422, "insufficient_balance": 422,
    "kind_mismatch": 422, "balance_limit_exceeded": 422, "refund_exceeds_payment": 422,
    "format_too_small": 422, "reversal_window_passed": 422, "rate_limited": 429,
    "headers_too_large": 431, "internal": 500, "not_implemented": 501, "unavailable": 503,
    "http_version_not_supported": 505,
}
REASONS = [c for c, s in ERRORS.items() if s == 422] + ["coupon_not_found", "rate_limited"]


def ref(name):
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema):
    return {"anyOf": [schema, {"type": "null"}]}


TS = {"type": "string", "format": "date-time", "examples": ["2026-11-30T22:53:30.123Z"]}
NTS = nullable(TS)
INT = {"type": "integer"}
NINT = {"type": ["integer", "null"]}
STR = {"type": "string"}
NSTR = {"type": ["string", "null"]}
MONEY = {"type": "integer", "description": "minor units (cents)", "minimum": 0}
CODE = {"type": "string", "minLength": 1, "maxLength": 256, "examples": ["SPRING15"]}


def obj(props, required=(), **kw):
    o = {"type": "object", "properties": props}
    if required:
        o["required"] = list(required)
    o.update(kw)
    return o


SCHEMAS = {
    "Error": obj({"error": obj({
        "code": {"type": "string", "enum": sorted(ERRORS)},
        "message": STR, "request_id": STR,
        "details": {"type": "object", "description": "field (400), limit, budget, balance, "
                    "reason... by code"}}, ["code", "message", "request_id"])}, ["error"],
        examples=[{"error": {"code": "coupon_not_found", "message": "no such coupon",
                             "request_id": "46e353e6180c08f80750041f", "details": {}}}]),
    "Discount": obj({"type": {"enum": ["percent", "fixed"]},
                     "value": {"type": "integer", "description": "percent: basis points "
                               "(1500 = 15 %); fixed: minor units"},
                     "max_amount": NINT, "min_order": NINT}, ["type", "value"]),
    "Limits": obj({k: NINT for k in ("total", "per_user", "per_user_daily",
                                     "per_user_weekly")}),
    "Customer": obj({"ip": {"type": "string", "description": "IPv4 or IPv6"},
                     "session_id": {"type": "string", "maxLength": 128},
                     "device_id": {"type": "string", "maxLength": 128},
                     "email_hash": {"type": "string", "maxLength": 128}},
                    additionalProperties=False),
    "CouponCreate": obj({
        "code": CODE, "kind": {"enum": ["discount", "voucher"], "default": "discount"},
        "balance": MONEY, "shards": {"type": "integer", "minimum": 2, "maximum": 16},
        "discount": ref("Discount"), "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
        "starts_at": NTS, "expires_at": NTS, "expires_in_days": INT,
        "utc_offset_minutes": INT, "limits": ref("Limits"), "campaign": NSTR,
        "tags": {"type": "array", "items": STR}, "metadata": {"type": "object"}},
        additionalProperties=False,
        examples=[{"code": "SPRING15", "discount": {"type": "percent", "value": 1500,
                   "max_amount": 500}, "currency": "EUR", "expires_in_days": 30,
                   "limits": {"total": 1000, "per_user": 2, "per_user_daily": 1}}]),
    "CouponPatch": obj({k: v for k, v in {
        "discount": ref("Discount"), "currency": STR, "starts_at": NTS, "expires_at": NTS,
        "expires_in_days": INT, "utc_offset_minutes": INT, "limits": ref("Limits"),
        "campaign": NSTR, "tags": {"type": "array", "items": STR},
        "metadata": {"type": "object"}}.items()}, additionalProperties=False),
    "Coupon": obj({
        "code": STR, "kind": {"enum": ["discount", "voucher"]},
        "status": {"enum": ["active", "scheduled", "exhausted", "expired", "disabled",
                            "archived"]},
        "discount": nullable(ref("Discount")), "currency": NSTR, "starts_at": NTS,
        "expires_at": NTS, "utc_offset_minutes": INT, "limits": ref("Limits"),
        "campaign": NSTR, "tags": {"type": "array", "items": STR},
        "metadata": {"type": "object"}, "used": obj({"total": INT}, ["total"]),
        "remaining": obj({"total": NINT}), "created_at": TS, "updated_at": TS,
        "shares": INT, "shared_at": NTS, "batch": NSTR,
        "balance": MONEY, "loaded": MONEY, "spent": MONEY, "refunded": MONEY,
        "outstanding": MONEY,
        "shards": obj({"count": INT, "budget": {"type": "array", "items": INT},
                       "used": {"type": "array", "items": INT}})},
        ["code", "kind", "status", "limits", "used", "created_at"]),
    "CouponRow": obj({
        "code": STR, "kind": {"enum": ["discount", "voucher"]}, "status": STR,
        "campaign": NSTR, "tags": {"type": "array", "items": STR}, "used": INT,
        "shares": INT, "created_at": TS, "expires_at": NTS, "balance": NINT,
        "currency": NSTR, "batch": NSTR}, ["code", "kind", "status", "used"]),
    "Remaining": obj({"total": NINT, "user": NINT, "user_daily": NINT, "user_weekly": NINT}),
    "CheckoutRequest": obj({
        "code": CODE, "user_id": {"type": "string", "minLength": 1, "maxLength": 128},
        "order_amount": MONEY, "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
        "order_id": STR, "metadata": {"type": "object"}, "customer": ref("Customer")},
        ["code", "user_id", "order_amount", "currency"], additionalProperties=False,
        examples=[{"code": "spring15", "user_id": "alice", "order_amount": 2599,
                   "currency": "EUR", "order_id": "1001",
                   "customer": {"ip": "203.0.113.9", "session_id": "s-42"}}]),
    "Validation": {"oneOf": [
        obj({"valid": {"const": True}, "code": STR, "discount": INT, "order_amount": INT,
             "currency": STR, "remaining": ref("Remaining")}, ["valid", "code", "discount"]),
        obj({"valid": {"const": False}, "code": STR, "reason": {"enum": REASONS},
             "message": STR, "details": {"type": "object"}}, ["valid", "reason"])]},
    "Redemption": obj({
        "id": STR, "code": STR, "user_id": STR, "discount": INT, "order_amount": INT,
        "currency": STR, "created_at": TS, "remaining": ref("Remaining"), "order_id": STR},
        ["id", "code", "user_id", "discount", "created_at"],
        examples=[{"id": "rdm_0790_1796091075017-0_r2v27m", "code": "SPRING15",
                   "user_id": "alice", "discount": 389, "order_amount": 2599,
                   "currency": "EUR", "created_at": "2026-12-01T02:11:15.017Z",
                   "remaining": {"total": 999, "user": 1, "user_daily": 0,
                                 "user_weekly": None}, "order_id": "1001"}]),
    "RedemptionRecord": obj({
        "id": STR, "kind": STR, "code": STR, "user_id": STR, "status": STR,
        "created_at": TS, "order_amount": NINT, "discount": NINT, "amount": NINT,
        "currency": NSTR, "order_id": NSTR, "source": {"enum": ["redis", "ledger"]}},
        ["id", "code", "status"]),
    "Reversal": obj({
        "id": STR, "status": {"enum": ["reversed", "refunded", "partially_refunded"]},
        "reversed_at": TS, "reversal_id": STR, "refund_id": STR, "refunded_at": TS,
        "amount": INT, "balance": INT, "refundable": INT}, ["id", "status"]),
    "PayRequest": obj({
        "amount": {"type": "integer", "minimum": 1}, "currency": STR, "user_id": STR,
        "order_id": STR, "metadata": {"type": "object"}, "customer": ref("Customer")},
        ["amount", "currency", "user_id"], additionalProperties=False),
    "Payment": obj({
        "id": STR, "kind": {"const": "pay"}, "code": STR, "user_id": STR, "amount": INT,
        "currency": STR, "balance": INT, "created_at": TS, "remaining": ref("Remaining"),
        "order_id": STR}, ["id", "code", "amount", "balance"]),
    "Recharge": obj({"id": STR, "code": STR, "amount": INT, "balance": INT, "loaded": INT},
                    ["id", "code", "amount", "balance"]),
    "Balance": obj({
        "code": STR, "balance": INT, "currency": STR,
        "status": {"enum": ["active", "disabled", "expired", "exhausted", "scheduled"]},
        "expires_at": NTS, "loaded": INT, "spent": INT, "refunded": INT, "outstanding": INT},
        ["code", "balance", "currency", "status"]),
    "Share": obj({"code": STR, "channel": STR, "recipient": NSTR, "shared_at": TS,
                  "shares": INT, "message": STR, "whatsapp_url": STR},
                 ["code", "message", "whatsapp_url"]),
    "Format": obj({"prefix": STR, "length": {"type": "integer", "minimum": 1},
                   "pattern": STR, "alphabet": STR, "check": {"type": "boolean"}}),
    "BatchCreate": obj({"count": {"type": "integer", "minimum": 1, "maximum": 10000000},
                        "format": ref("Format"), "template": ref("CouponCreate")},
                       ["count", "template"], additionalProperties=False,
                       examples=[{"count": 10000, "format": {"prefix": "VIP-", "length": 8},
                                  "template": {"discount": {"type": "percent", "value": 1500},
                                               "limits": {"total": 1}}}]),
    "Batch": obj({
        "id": STR, "kind": STR,
        "state": {"enum": ["queued", "running", "done", "cancelled", "failed"]},
        "requested": INT, "created": INT, "progress": {"type": "number"}, "space": INT,
        "format": ref("Format"), "template": {"type": "object"}, "campaign": NSTR,
        "error": NSTR, "codes_url": STR, "created_at": TS, "started_at": NTS,
        "finished_at": NTS, "cancel_requested": {"type": "boolean"},
        "codes_per_second": NINT, "redis_bytes_per_code": NINT},
        ["id", "state", "requested", "created"]),
    "Transaction": obj({
        "txn_id": STR, "ts": TS, "kind": STR, "outcome": {"enum": ["accepted", "rejected"]},
        "reason": NSTR, "code": NSTR, "campaign": NSTR, "user_id": NSTR, "order_id": NSTR,
        "ref_id": NSTR, "order_amount": NINT, "discount_amount": NINT, "paid_amount": NINT,
        "balance_after": NINT, "currency": NSTR, "client_ip": NSTR, "api_key_id": NSTR,
        "request_id": NSTR, "peer_ip": NSTR, "session_id": NSTR, "device_id": NSTR,
        "email_hash": NSTR}, ["txn_id", "ts", "kind", "outcome"]),
    "Stats": obj({
        "coupons": obj({"total": INT, "used": INT, "unused": INT,
                        "by_status": {"type": "object", "additionalProperties": INT},
                        "by_kind": {"type": "object", "additionalProperties": INT}}),
        "campaigns": {"type": "array", "items": {"type": "object"}},
        "per_hour": {"type": "array", "items": obj({
            "hour": TS, "redemptions": INT, "rejected": INT, "reversals": INT,
            "payments": INT}, ["hour", "redemptions", "rejected"])},
        "rejections": {"type": "array", "items": obj({"reason": STR, "count": INT},
                                                      ["reason", "count"])},
        "top_coupons": {"type": "array", "items": obj({"code": STR, "kind": STR,
                                                       "uses": INT})},
        "vouchers": obj({k: INT for k in ("count", "loaded", "spent", "refunded",
                                          "outstanding")}),
        "as_of": TS, "outbox_backlog": INT},
        ["coupons", "per_hour", "top_coupons", "vouchers"]),
    "WebhookCreate": obj({"url": {"type": "string", "format": "uri", "maxLength": 2048},
                          "events": {"type": "array", "minItems": 1, "uniqueItems": True,
                                     "items": {"enum": [
                                         "redemption.created", "redemption.reversed",
                                         "voucher.paid", "voucher.refunded",
                                         "voucher.recharged", "coupon.created",
                                         "coupon.updated", "coupon.disabled",
                                         "coupon.exhausted", "batch.completed",
                                         "fraud.rate_limited"]}},
                          "description": nullable({"type": "string", "maxLength": 500})},
                         ["url", "events"], additionalProperties=False),
    "Webhook": obj({"id": STR, "url": STR, "events": {"type": "array", "items": STR},
                    "secret": {"type": "string", "description": "only in the answer to "
                               "POST /v1/webhooks"},
                    "enabled": {"type": "boolean"}, "created_at": TS, "updated_at": TS,
                    "description": NSTR, "disabled_reason": NSTR},
                   ["id", "url", "events", "enabled"]),
    "Delivery": obj({"id": STR, "event_id": STR, "type": STR,
                     "status": {"enum": ["pending", "delivered", "failed"]},
                     "attempts": INT, "last_response_code": NINT, "last_error": NSTR,
                     "next_attempt_at": NTS, "created_at": TS, "delivered_at": NTS},
                    ["id", "status", "attempts"]),
    "Me": obj({"key_id": STR, "scopes": {"type": "array", "items": {
        "enum": ["admin", "redeem", "fraud"]}}}, ["key_id", "scopes"]),
    "Health": obj({"status": STR}, ["status"]),
    "Ready": obj({"status": {"enum": ["ready", "not_ready"]}, "checks": {"type": "object"},
                  "ledger": {"type": "object"}, "outbox_backlog": NINT,
                  "shipped_rows": NINT}, ["status"]),
}


def page(item):
    return obj({"data": {"type": "array", "items": ref(item)}, "has_more": {"type": "boolean"},
                "next_cursor": NSTR}, ["data", "has_more", "next_cursor"])


def listing(item):
    return obj({"data": {"type": "array", "items": ref(item)}}, ["data"])


HDR = {
    "X-Request-Id": {"description": "the request's id (echoed when the client sent one; in "
                     "every error's request_id)", "schema": STR},
    "Retry-After": {"description": "seconds to wait (429 and 503)", "schema": INT},
    "Idempotent-Replayed": {"description": "true when the answer is the stored one of an "
                            "earlier request with the same Idempotency-Key",
                            "schema": {"const": "true"}},
}


def answer(schema, desc="OK", example=None, media="application/json", replayable=False):
    r = {"description": desc, "headers": {"X-Request-Id": {"$ref": "#/components/headers/"
                                                               "X-Request-Id"}},
         "content": {media: {"schema": schema}}}
    if replayable:
        r["headers"]["Idempotent-Replayed"] = {"$ref": "#/components/headers/"
                                                       "Idempotent-Replayed"}
    if example is not None:
        r["content"][media]["example"] = example
    return r


def errors(*codes):
    """The documented error answers: the listed codes, by status, plus the ones any route can
    give (the HTTP layer's refusals, 401/403 where a key is needed, 503)."""
    by = {}
    for c in codes:
        by.setdefault(ERRORS[c], []).append(c)
    out = {}
    for status, cs in sorted(by.items()):
        out[str(status)] = {
            "description": ", ".join(cs),
            "headers": {"X-Request-Id": {"$ref": "#/components/headers/X-Request-Id"},
                        **({"Retry-After": {"$ref": "#/components/headers/Retry-After"}}
                           if status in (429, 503) else {})},
            "content": {"application/json": {"schema": ref("Error"), "example": {
                "error": {"code": cs[0], "message": "…", "request_id": "0a1b2c3d4e5f60718293a4b5"}}}}}
    out["default"] = {"$ref": "#/components/responses/Error"}
    return out


P = {
    "code": {"name": "code", "in": "path", "required": True, "schema": CODE,
             "description": "the coupon's code (case-insensitive)"},
    "id": {"name": "id", "in": "path", "required": True, "schema": STR},
    "delivery": {"name": "delivery", "in": "path", "required": True, "schema": STR},
    "idem": {"name": "Idempotency-Key", "in": "header", "required": True,
             "schema": {"type": "string", "minLength": 1, "maxLength": 255},
             "description": "makes a retry safe: the same key and body answer the stored "
                            "answer (Idempotent-Replayed); another body is 409"},
    "idem_opt": {"name": "Idempotency-Key", "in": "header", "required": False,
                 "schema": {"type": "string", "minLength": 1, "maxLength": 255}},
    "reqid": {"name": "X-Request-Id", "in": "header", "required": False, "schema": STR,
              "description": "echoed in X-Request-Id and the ledger"},
    "xff": {"name": "X-Forwarded-For", "in": "header", "required": False, "schema": STR,
            "description": "honoured from trusted_proxies only"},
    "limit": {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1,
                                                          "maximum": 1000, "default": 100}},
    "cursor": {"name": "cursor", "in": "query", "schema": STR,
               "description": "next_cursor of the previous page"},
    "accept": {"name": "Accept", "in": "header", "schema": {"enum": ["application/json",
                                                                     "text/csv"]},
               "description": "text/csv streams every matching row"},
}


def q(name, desc, many=False, schema=None):
    s = schema or STR
    if many:
        return {"name": name, "in": "query", "description": desc + " (repeat for any of, up "
                "to 20)", "schema": {"type": "array", "items": s, "maxItems": 20},
                "style": "form", "explode": True}
    return {"name": name, "in": "query", "description": desc, "schema": s}


def body(schema_name, required=True, example=None):
    b = {"required": required, "content": {"application/json": {"schema": ref(schema_name)}}}
    if example is not None:
        b["content"]["application/json"]["example"] = example
    return b


def op(summary, scopes, responses, params=(), req=None, tag=None, op_id=None, desc=None):
    o = {"summary": summary, "operationId": op_id, "tags": [tag] if tag else [],
         "parameters": [{"$ref": "#/components/parameters/reqid"}] + list(params),
         "responses": responses}
    if desc:
        o["description"] = desc
    if scopes:
        o["security"] = [{"apiKey": []}]
        o["x-scopes"] = scopes
        o["description"] = (o.get("description", "") + f"\n\nScope: {' or '.join(scopes)}."
                            ).strip()
    else:
        o["security"] = []
    if req:
        o["requestBody"] = req
    return o


PR = lambda n: {"$ref": f"#/components/parameters/{n}"}  # noqa: E731
COMMON = ("invalid_request", "unauthorized", "forbidden", "rate_limited", "unavailable")
CHECKOUT = ("coupon_not_found", "coupon_not_started", "coupon_expired", "coupon_disabled",
            "limit_total_reached", "limit_user_reached", "limit_user_daily_reached",
            "limit_user_weekly_reached", "min_order_not_met", "currency_mismatch",
            "kind_mismatch")
CSV = {"text/csv": {"schema": STR}}

PATHS = {
    "/healthz": {"get": op("Alive", None, {"200": answer(ref("Health"), "alive")},
                           tag="health", op_id="healthz")},
    "/readyz": {"get": op("Ready to decide redemptions", None,
                          {"200": answer(ref("Ready"), "ready"),
                           "503": answer(ref("Ready"), "not ready")},
                          tag="health", op_id="readyz")},
    "/metrics": {"get": op("Prometheus metrics", None, {
        "200": answer(STR, "Prometheus text format", media="text/plain"),
        **errors("forbidden", "not_found")}, tag="health", op_id="metrics",
        desc="Loopback clients only unless metrics=any (or a list).")},
    "/openapi.json": {"get": op("This document", None, {"200": answer({"type": "object"})},
                                tag="meta", op_id="openapi")},
    "/console": {"get": op("The console (redirects to /console/)", None, {
        "308": {"description": "to /console/", "headers": {
            "Location": {"schema": {"const": "/console/"}}}}}, tag="meta",
        op_id="consoleRedirect")},
    "/console/": {"get": op("The web console", None, {
        "200": answer(STR, "the page", media="text/html")}, tag="meta", op_id="console")},
    "/console/{file}": {"get": op("The console's files", None, {
        "200": {"description": "a script or style sheet", "content": {
            "text/javascript": {"schema": STR}, "text/css": {"schema": STR}}},
        **errors("not_found")}, [{"name": "file", "in": "path", "required": True,
                                  "schema": STR}], tag="meta", op_id="consoleFile")},
    "/v1/me": {"get": op("The calling key", ["admin", "redeem", "fraud"], {
        "200": answer(ref("Me"), example={"key_id": "5xmn41x2",
                                          "scopes": ["admin", "redeem", "fraud"]}),
        **errors("unauthorized")}, tag="meta", op_id="me")},
    "/v1/coupons": {
        "post": op("Create a coupon or voucher", ["admin"], {
            "201": answer(ref("Coupon"), "created"),
            **errors(*COMMON, "coupon_exists", "payload_too_large", "unsupported_media_type")},
            req=body("CouponCreate"), tag="coupons", op_id="createCoupon"),
        "get": op("List coupons", ["admin", "fraud"], {
            "200": {"description": "a page, or with Accept: text/csv every row",
                    "headers": {"X-Request-Id": {"$ref": "#/components/headers/X-Request-Id"}},
                    "content": {"application/json": {"schema": page("CouponRow")}, **CSV}},
            **errors(*COMMON)},
            [q("status", "active/valid, scheduled, exhausted, expired, disabled, used, unused",
               True), q("kind", "discount or voucher", True), q("campaign", "campaign", True),
             q("tag", "tag", True), q("prefix", "code prefix", True), q("batch", "batch id", True),
             q("created_from", "RFC 3339", schema=TS), q("created_to", "RFC 3339", schema=TS),
             q("expires_from", "RFC 3339", schema=TS), q("expires_to", "RFC 3339", schema=TS),
             q("shared", "shared at least once", schema={"type": "boolean"}),
             PR("limit"), PR("cursor"), PR("accept")], tag="coupons", op_id="listCoupons"),
    },
    "/v1/coupons/{code}": {
        "parameters": [PR("code")],
        "get": op("A coupon", ["admin", "fraud"], {
            "200": answer(ref("Coupon")), **errors(*COMMON, "coupon_not_found")},
            tag="coupons", op_id="getCoupon"),
        "patch": op("Change a coupon", ["admin"], {
            "200": answer(ref("Coupon")), **errors(*COMMON, "coupon_not_found", "conflict")},
            req=body("CouponPatch"), tag="coupons", op_id="patchCoupon"),
    },
    "/v1/coupons/{code}/disable": {"parameters": [PR("code")], "post": op(
        "Disable", ["admin"], {"200": answer(ref("Coupon")),
                               **errors(*COMMON, "coupon_not_found")},
        tag="coupons", op_id="disableCoupon")},
    "/v1/coupons/{code}/enable": {"parameters": [PR("code")], "post": op(
        "Enable", ["admin"], {"200": answer(ref("Coupon")),
                              **errors(*COMMON, "coupon_not_found")},
        tag="coupons", op_id="enableCoupon")},
    "/v1/coupons/{code}/share": {"parameters": [PR("code")], "post": op(
        "Share: the message and a WhatsApp link", ["admin"], {
            "200": answer(ref("Share")),
            **errors(*COMMON, "coupon_not_found", "coupon_disabled", "coupon_expired")},
        req={"required": False, "content": {"application/json": {"schema": obj({
            "channel": {"enum": ["whatsapp", "email", "sms", "link", "other"]},
            "recipient": STR, "message": STR}, additionalProperties=False)}}},
        tag="coupons", op_id="shareCoupon")},
    "/v1/validate": {"post": op("Would it apply? (changes nothing)", ["redeem"], {
        "200": answer(ref("Validation")), **errors(*COMMON, "coupon_not_found")},
        [PR("xff")], body("CheckoutRequest"), tag="checkout", op_id="validate")},
    "/v1/redemptions": {"post": op("Redeem", ["redeem"], {
        "201": answer(ref("Redemption"), "redeemed", replayable=True),
        **errors(*COMMON, *CHECKOUT, "idempotency_key_required", "idempotency_key_reused")},
        [PR("idem"), PR("xff")], body("CheckoutRequest"), tag="checkout", op_id="redeem")},
    "/v1/redemptions/{id}": {"parameters": [PR("id")], "get": op(
        "A redemption or payment", ["redeem", "fraud"], {
            "200": answer(ref("RedemptionRecord")), **errors(*COMMON, "redemption_not_found")},
        tag="checkout", op_id="getRedemption")},
    "/v1/redemptions/{id}/reverse": {"parameters": [PR("id")], "post": op(
        "Reverse a redemption, or refund (part of) a payment", ["redeem"], {
            "200": answer(ref("Reversal"), replayable=True),
            **errors(*COMMON, "redemption_not_found", "already_reversed",
                     "refund_exceeds_payment", "reversal_window_passed",
                     "idempotency_key_required", "idempotency_key_reused")},
        [PR("idem_opt")], {"required": False, "content": {"application/json": {"schema": obj({
            "amount": {"type": "integer", "minimum": 1}, "customer": ref("Customer")},
            additionalProperties=False)}}}, tag="checkout", op_id="reverse",
        desc="Idempotency-Key is required for refunds (an amount or a payment).")},
    "/v1/vouchers/{code}/balance": {"parameters": [PR("code")], "get": op(
        "A voucher's balance", ["redeem", "admin", "fraud"], {
            "200": answer(ref("Balance")),
            **errors(*COMMON, "coupon_not_found", "kind_mismatch")},
        tag="vouchers", op_id="balance")},
    "/v1/vouchers/{code}/pay": {"parameters": [PR("code")], "post": op(
        "Pay with a voucher", ["redeem"], {
            "201": answer(ref("Payment"), "paid", replayable=True),
            **errors(*COMMON, *CHECKOUT, "insufficient_balance", "idempotency_key_required",
                     "idempotency_key_reused")},
        [PR("idem"), PR("xff")], body("PayRequest"), tag="vouchers", op_id="pay")},
    "/v1/vouchers/{code}/recharge": {"parameters": [PR("code")], "post": op(
        "Recharge a voucher", ["admin"], {
            "200": answer(ref("Recharge"), replayable=True),
            **errors(*COMMON, "coupon_not_found", "kind_mismatch", "currency_mismatch",
                     "balance_limit_exceeded", "idempotency_key_required",
                     "idempotency_key_reused")},
        [PR("idem")], {"required": True, "content": {"application/json": {"schema": obj({
            "amount": {"type": "integer", "minimum": 1}, "currency": STR}, ["amount"],
            additionalProperties=False)}}}, tag="vouchers", op_id="recharge")},
    "/v1/batches": {
        "post": op("Start a batch of codes", ["admin"], {
            "202": answer(ref("Batch"), "queued", replayable=True),
            **errors(*COMMON, "format_too_small", "idempotency_key_reused")},
            [PR("idem_opt")], body("BatchCreate"), tag="batches", op_id="createBatch"),
        "get": op("The last 100 batches", ["admin", "fraud"], {
            "200": answer(listing("Batch")), **errors(*COMMON)}, tag="batches",
            op_id="listBatches"),
    },
    "/v1/batches/{id}": {"parameters": [PR("id")], "get": op(
        "A batch", ["admin", "fraud"], {"200": answer(ref("Batch")),
                                        **errors(*COMMON, "batch_not_found")},
        tag="batches", op_id="getBatch")},
    "/v1/batches/{id}/cancel": {"parameters": [PR("id")], "post": op(
        "Cancel a batch", ["admin"], {
            "200": answer(ref("Batch"), "cancelled (it was queued)"),
            "202": answer(ref("Batch"), "cancelling (it stops at its next chunk)"),
            **errors(*COMMON, "batch_not_found", "batch_finished")},
        tag="batches", op_id="cancelBatch")},
    "/v1/batches/{id}/codes": {"parameters": [PR("id")], "get": op(
        "A batch's codes (CSV)", ["admin"], {
            "200": {"description": "code per line, streamed", "content": CSV},
            **errors(*COMMON, "batch_not_found")}, tag="batches", op_id="batchCodes")},
    "/v1/transactions": {"get": op("The ledger", ["fraud"], {
        "200": {"description": "a page, or with Accept: text/csv every row",
                "headers": {"X-Request-Id": {"$ref": "#/components/headers/X-Request-Id"}},
                "content": {"application/json": {"schema": page("Transaction")}, **CSV}},
        **errors(*COMMON)},
        [q("code", "code", True), q("user_id", "user", True),
         q("client_ip", "customer address or CIDR", True),
         q("kind", "redeem, reverse, validate, pay, refund, recharge, share, coupon_create, "
                   "coupon_update, coupon_disable, coupon_enable, coupon_archive, rate_limited",
           True), q("outcome", "accepted or rejected", True), q("reason", "error code", True),
         q("from", "RFC 3339", schema=TS), q("to", "RFC 3339", schema=TS), PR("limit"),
         PR("cursor"), PR("accept")], tag="ledger", op_id="transactions")},
    "/v1/stats": {"get": op("Statistics", ["admin", "fraud"], {
        "200": answer(ref("Stats")), **errors(*COMMON)}, tag="ledger", op_id="stats")},
    "/v1/webhooks": {
        "post": op("Add a webhook endpoint", ["admin"], {
            "201": answer(ref("Webhook"), "created; the secret is shown this once"),
            **errors(*COMMON)}, req=body("WebhookCreate"), tag="webhooks",
            op_id="createWebhook"),
        "get": op("Webhook endpoints", ["admin"], {
            "200": answer(listing("Webhook")), **errors(*COMMON)}, tag="webhooks",
            op_id="listWebhooks"),
    },
    "/v1/webhooks/{id}": {
        "parameters": [PR("id")],
        "get": op("A webhook endpoint", ["admin"], {
            "200": answer(ref("Webhook")), **errors(*COMMON, "webhook_not_found")},
            tag="webhooks", op_id="getWebhook"),
        "patch": op("Change a webhook endpoint", ["admin"], {
            "200": answer(ref("Webhook")), **errors(*COMMON, "webhook_not_found")},
            req={"required": True, "content": {"application/json": {"schema": obj({
                "url": STR, "events": {"type": "array", "items": STR},
                "description": NSTR, "enabled": {"type": "boolean"}},
                additionalProperties=False)}}}, tag="webhooks", op_id="patchWebhook"),
        "delete": op("Delete a webhook endpoint and its deliveries", ["admin"], {
            "200": answer(obj({"id": STR, "deleted": {"const": True}}, ["id", "deleted"])),
            **errors(*COMMON, "webhook_not_found")}, tag="webhooks", op_id="deleteWebhook"),
    },
    "/v1/webhooks/{id}/deliveries": {"parameters": [PR("id")], "get": op(
        "The newest 100 deliveries", ["admin"], {
            "200": answer(listing("Delivery")), **errors(*COMMON, "webhook_not_found")},
        tag="webhooks", op_id="listDeliveries")},
    "/v1/webhooks/{id}/deliveries/{delivery}/retry": {
        "parameters": [PR("id"), PR("delivery")], "post": op(
            "Send a delivery again now", ["admin"], {
                "200": answer(ref("Delivery")),
                **errors(*COMMON, "webhook_not_found", "delivery_not_found")},
            tag="webhooks", op_id="retryDelivery")},
}

EVENTS = SCHEMAS["WebhookCreate"]["properties"]["events"]["items"]["enum"]
SCHEMAS["Event"] = obj({"id": {"type": "string", "description": "unique: deduplicate by it"},
                        "type": {"enum": EVENTS}, "created_at": TS,
                        "data": {"type": "object", "description": "the ledger row (a "
                                 "transaction), the coupon, the batch or the budget"}},
                       ["id", "type", "created_at", "data"],
                       examples=[{"id": "evt_rdm_0042_1764543210123-0_k3j9fq",
                                  "type": "redemption.created",
                                  "created_at": "2026-11-30T22:53:30.123Z",
                                  "data": {"transaction_id": "rdm_0042_...", "code": "SAVE10",
                                           "user_id": "u-42", "discount_amount": 500}}])
WEBHOOKS = {e: {"post": {
    "summary": f"{e}, POSTed to each subscribed endpoint",
    "parameters": [
        {"name": "Redeemd-Signature", "in": "header", "required": True, "schema": STR,
         "description": "t=<unix seconds>,v1=<hex HMAC-SHA256(secret, \"<t>.<raw body>\")>"},
        {"name": "Redeemd-Delivery", "in": "header", "required": True, "schema": STR}],
    "requestBody": {"required": True, "content": {"application/json": {"schema": ref("Event")}}},
    "responses": {"2XX": {"description": "delivered; anything else (or no answer within "
                                         "webhook_timeout_ms) is retried with backoff"}}}}
    for e in EVENTS}

DOC = {
    "openapi": "3.1.0",
    "info": {"title": "redeemd", "version": "0.1.0",
             "summary": "Coupon and voucher redemption: exact limits in Redis, every attempt "
                        "in a PostgreSQL ledger.",
             "description": "Every answer that is not a success is the Error envelope, with "
                            "X-Request-Id; 429 and 503 carry Retry-After. Amounts are integers "
                            "in minor units. See README.md.",
             "license": {"name": "MIT", "identifier": "MIT"}},
    "servers": [{"url": "http://127.0.0.1:8080", "description": "./scripts/run"}],
    "tags": [{"name": t} for t in ("checkout", "vouchers", "coupons", "batches", "ledger",
                                   "webhooks", "health", "meta")],
    "paths": PATHS,
    "webhooks": WEBHOOKS,
    "components": {
        "schemas": SCHEMAS,
        "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer",
                                       "description": "Authorization: Bearer rdk_... "
                                                      "(redeemctl keys create)"}},
        "parameters": {k: v for k, v in P.items()},
        "headers": HDR,
        "responses": {"Error": {
            "description": "any other error (the HTTP layer's refusals: 400, 404, 405, 408, "
                           "413, 415, 417, 431, 501, 505; 500)",
            "headers": {"X-Request-Id": {"$ref": "#/components/headers/X-Request-Id"}},
            "content": {"application/json": {"schema": ref("Error")}}}},
    },
    "security": [{"apiKey": []}],
}

if __name__ == "__main__":
    import sys
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "openapi.json")
    with open(out, "w") as f:
        json.dump(DOC, f, indent=1, sort_keys=False)
        f.write("\n")
    print(out)
