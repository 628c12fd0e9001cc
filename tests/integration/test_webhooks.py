"""Webhooks: endpoints (scope admin), events from the ledger, signed POSTs checked here by an
independent HMAC, retries with backoff, a hanging receiver that holds up no other, failure
after the retry window and the endpoint disabled, and at-least-once across kill -9."""
import hashlib
import hmac
import http.server
import json
import os
import socket
import ssl
import subprocess
import tempfile
import threading
import time

import psycopg2
import pytest

from conftest import wait_for

FAST = ("--webhook_allow_private=true", "--webhook_poll_ms=50", "--webhook_backoff_ms=100",
        "--webhook_timeout_ms=1000")
ALL_EVENTS = ["redemption.created", "redemption.reversed", "voucher.paid", "voucher.refunded",
              "voucher.recharged", "coupon.created", "coupon.updated", "coupon.disabled",
              "coupon.exhausted", "batch.completed", "fraud.rate_limited"]


class Receiver:
    """An HTTP server: /ok answers 204, /flaky/N fails N times then 200, /slow/S waits S
    seconds then 200, /hang waits 30 s, /drop-second reads every second request of a
    connection and closes it unanswered; every request is recorded with its connection's
    port. keepalive: HTTP/1.1 with connections kept open (else HTTP/1.0, one per request).
    tls: (certificate file, key file) for https. host "localhost" listens on both ::1 and
    127.0.0.1 where the machine has IPv6 (the name may resolve to either)."""

    def __init__(self, keepalive=False, tls=None, host="127.0.0.1"):
        self.got, self.lock, self.fails, self.dropped = [], threading.Lock(), {}, 0
        self.host = host
        rec = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1" if keepalive else "HTTP/1.0"
            n = 0

            def log_message(self, *a):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                self.n += 1
                parts = self.path.strip("/").split("/")
                if parts[0] == "drop-second" and self.n % 2 == 0:
                    with rec.lock:
                        rec.dropped += 1
                    self.close_connection = True
                    return
                with rec.lock:
                    rec.got.append((self.path, dict(self.headers), body, time.monotonic(),
                                    self.client_address[1]))
                code = 204
                if parts[0] == "flaky":
                    with rec.lock:
                        n = rec.fails.get(self.path, 0)
                        rec.fails[self.path] = n + 1
                    code = 500 if n < int(parts[1]) else 200
                elif parts[0] == "slow":
                    time.sleep(float(parts[1]))
                    code = 200
                elif parts[0] == "hang":
                    time.sleep(30)
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

        class S(http.server.ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 128  # the listen backlog: 5 drops a burst's SYNs for 1 s
            address_family = socket.AF_INET6 if host == "localhost" and socket.has_ipv6 \
                else socket.AF_INET

            def server_bind(self):
                if self.address_family == socket.AF_INET6:
                    self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
                super().server_bind()

        try:
            self.srv = S(("::" if S.address_family == socket.AF_INET6 else "127.0.0.1", 0), H)
        except OSError:  # no IPv6 here
            S.address_family = socket.AF_INET
            self.srv = S(("127.0.0.1", 0), H)
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*tls)
            self.srv.socket = ctx.wrap_socket(self.srv.socket, server_side=True)
        self.scheme = "https" if tls else "http"
        self.port = self.srv.server_address[1]
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def url(self, path, host=None):
        return f"{self.scheme}://{host or self.host}:{self.port}{path}"

    def bodies(self, path):
        with self.lock:
            return [json.loads(r[2]) for r in self.got if r[0] == path]

    def connections(self, path):
        with self.lock:
            return {r[4] for r in self.got if r[0] == path}

    def stop(self):
        self.srv.shutdown()


def make_certs():
    """A CA and a certificate it signed for the name localhost only, and a self-signed one
    for localhost no CA vouches for; valid for a century (redeemd's clock may run ahead)."""
    d = tempfile.mkdtemp(prefix="wh-tls-")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def run(*a):
        subprocess.run(["openssl", *a], check=True, cwd=d, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "36500",
        "-subj", "/CN=redeemd test CA")
    run("req", *ec, "-keyout", "srv.key", "-out", "srv.csr", "-subj", "/CN=localhost")
    with open(os.path.join(d, "ext"), "w") as f:
        f.write("subjectAltName=DNS:localhost\n")
    run("x509", "-req", "-in", "srv.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "srv.pem", "-days", "36500", "-extfile", "ext")
    run("req", "-x509", *ec, "-keyout", "self.key", "-out", "self.pem", "-days", "36500",
        "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost")
    return {k: os.path.join(d, k) for k in ("ca.pem", "srv.pem", "srv.key", "self.pem",
                                             "self.key")}


CERTS = make_certs()


@pytest.fixture()
def receiver():
    r = Receiver()
    yield r
    r.stop()


def verify(secret, headers, body):
    """The documented check, written from the README, not from redeemd's code."""
    parts = dict(kv.split("=", 1) for kv in headers["Redeemd-Signature"].split(","))
    want = hmac.new(secret.encode(), parts["t"].encode() + b"." + body,
                    hashlib.sha256).hexdigest()
    return hmac.compare_digest(want, parts["v1"])


def sql(db, q, *args):
    with psycopg2.connect(db) as c, c.cursor() as cur:
        cur.execute(q, args)
        return cur.fetchall() if cur.description else None


def hook(api, url, events=None, **extra):
    r = api.post("/v1/webhooks", dict(url=url, events=events or ALL_EVENTS, **extra))
    assert r.status_code == 201, r.text
    return r.json()


@pytest.mark.daemon_args(*FAST)
def test_endpoints_are_managed_with_scope_admin(stack, receiver):
    redis, d, api, db = stack
    w = hook(api, receiver.url("/ok"), ["coupon.created"], description="CRM")
    assert w["id"].startswith("wh_") and w["secret"].startswith("whsec_") and w["enabled"]
    listed = api.get("/v1/webhooks").json()["data"]
    assert [x["id"] for x in listed] == [w["id"]] and "secret" not in listed[0]
    one = api.get(f"/v1/webhooks/{w['id']}").json()
    assert one["events"] == ["coupon.created"] and "secret" not in one
    p = api.patch(f"/v1/webhooks/{w['id']}", {"events": ["coupon.created", "voucher.paid"],
                                              "description": None, "enabled": False})
    assert p.status_code == 200 and p.json()["enabled"] is False, p.text
    assert p.json()["description"] is None and p.json()["disabled_reason"]
    assert api.patch(f"/v1/webhooks/{w['id']}", {"enabled": True}).json()["enabled"] is True
    bad = [({"url": "https:/x.example/"}, "url"), ({"url": "ftp://x/"}, "url"),
           ({"url": "http://x/", "events": []}, "events"),
           ({"url": "http://x/", "events": ["coupon.made"]}, "events"),
           ({"url": "http://x/", "events": ["coupon.created", "coupon.created"]}, "events"),
           ({"url": "http://x/", "events": ["coupon.created"], "description": "d" * 501},
            "description"),
           ({"url": "http://x/", "events": ["coupon.created"], "secret": "mine"}, "secret")]
    for body, field in bad:
        r = api.post("/v1/webhooks", body)
        assert r.status_code == 400 and r.json()["error"]["details"]["field"] == field, r.text
    assert api.get("/v1/webhooks/wh_nope").status_code == 404
    assert api.get("/v1/webhooks/wh_00000000000000000000").json()["error"]["code"] == \
        "webhook_not_found"
    r = api.post(f"/v1/webhooks/{w['id']}/deliveries/whd_00000000000000000000/retry")
    assert r.status_code == 404 and r.json()["error"]["code"] == "delivery_not_found"
    assert api.req("DELETE", f"/v1/webhooks/{w['id']}").status_code == 200
    assert api.get(f"/v1/webhooks/{w['id']}").status_code == 404
    # scope admin only
    from conftest import Api, make_key, key_loaded
    k = make_key(redis.port, "redeem,fraud", "no admin")
    wait_for(lambda: key_loaded(d.url, k, path="/v1/webhooks", ok=(403,)), what="key loaded")
    assert Api(d.url, k).get("/v1/webhooks").status_code == 403


def test_private_targets_refused_unless_allowed(stack):
    redis, d, api, db = stack
    for url in ("http://127.0.0.1:9/", "http://10.1.2.3/", "http://[::1]/",
                "http://169.254.169.254/latest", "http://localhost:8080/",
                "http://x.localhost/"):
        r = api.post("/v1/webhooks", {"url": url, "events": ["coupon.created"]})
        assert r.status_code == 400 and "private" in r.json()["error"]["message"], (url, r.text)
    # a stored URL that became private (allowed then): refused again before each delivery
    sql(d.pg_conninfo, "INSERT INTO webhooks (id, url, events, secret) VALUES "
        "('wh_private000000000000', 'http://127.0.0.1:9/', '{coupon.created}', 's')")
    api.create(code="WH-PRIV")
    wait_for(lambda: sql(d.pg_conninfo, "SELECT last_error FROM webhook_deliveries WHERE "
                                        "webhook_id = 'wh_private000000000000' AND "
                                        "last_error IS NOT NULL"), timeout=30,
             what="the delivery refused")
    err = sql(d.pg_conninfo, "SELECT last_error FROM webhook_deliveries WHERE webhook_id = "
                             "'wh_private000000000000'")[0][0]
    assert "private" in err, err


@pytest.mark.daemon_args(*FAST)
def test_events_are_signed_and_come_from_the_ledger(stack, receiver):
    redis, d, api, db = stack
    w = hook(api, receiver.url("/ok"))
    api.create(code="WH-1", limits={"total": 2})
    rid = api.redeem("WH-1", user="a").json()["id"]
    assert api.redeem("WH-1", user="b").status_code == 201  # the last use: exhausted
    assert api.post(f"/v1/redemptions/{rid}/reverse", {},
                    headers={"Idempotency-Key": "r1"}).status_code == 200
    assert api.patch("/v1/coupons/WH-1", {"campaign": "spring"}).status_code == 200
    assert api.post("/v1/coupons/WH-1/disable", {}).status_code == 200
    v = api.post("/v1/coupons", {"code": "WH-V", "kind": "voucher", "balance": 1000,
                                 "currency": "EUR"})
    assert v.status_code == 201
    pay = api.post("/v1/vouchers/WH-V/pay", {"amount": 300, "currency": "EUR", "user_id": "a"},
                   headers={"Idempotency-Key": "p1"}).json()
    assert api.post(f"/v1/redemptions/{pay['id']}/reverse", {"amount": 100},
                    headers={"Idempotency-Key": "f1"}).status_code == 200
    assert api.post("/v1/vouchers/WH-V/recharge", {"amount": 500},
                    headers={"Idempotency-Key": "c1"}).status_code == 200
    # a refused attempt is in the ledger, but no event tells of it
    assert api.redeem("WH-1", user="c").status_code == 422
    want = {"coupon.created": 2, "redemption.created": 2, "coupon.exhausted": 1,
            "redemption.reversed": 1, "coupon.updated": 1, "coupon.disabled": 1,
            "voucher.paid": 1, "voucher.refunded": 1, "voucher.recharged": 1}

    def counts():
        out = {}
        for e in receiver.bodies("/ok"):
            out[e["type"]] = out.get(e["type"], 0) + 1
        return out
    wait_for(lambda: counts() == want, timeout=30, what=f"events {want}")
    with receiver.lock:
        got = list(receiver.got)
    ids = set()
    for path, headers, body, _, _ in got:
        assert verify(w["secret"], headers, body), headers
        assert not verify("whsec_wrong", headers, body)
        e = json.loads(body)
        assert set(e) == {"id", "type", "created_at", "data"} and e["id"] not in ids
        ids.add(e["id"])
        assert headers["Content-Type"] == "application/json"
    red = [json.loads(r[2]) for r in got if json.loads(r[2])["type"] == "redemption.created"]
    assert {e["data"]["user_id"] for e in red} == {"a", "b"}
    assert {e["data"]["transaction_id"] for e in red} == \
        {r[0] for r in sql(db, "SELECT txn_id FROM transactions WHERE code = 'WH-1' AND "
                               "kind = 'redeem' AND outcome = 'accepted'")}
    # the outcomes are written a moment after the answers (one statement per batch)
    wait_for(lambda: {x["status"] for x in api.get(f"/v1/webhooks/{w['id']}/deliveries")
                      .json()["data"]} == {"delivered"}, timeout=30, what="all recorded")
    dl = api.get(f"/v1/webhooks/{w['id']}/deliveries").json()["data"]
    assert len(dl) == sum(want.values())
    assert {x["last_response_code"] for x in dl} == {204} and {x["attempts"] for x in dl} == {1}


@pytest.mark.daemon_args(*FAST)
def test_retries_until_delivered_and_retry_by_hand(stack, receiver):
    redis, d, api, db = stack
    w = hook(api, receiver.url("/flaky/2"), ["coupon.created"])
    api.create(code="WH-R1")
    wait_for(lambda: len(receiver.bodies("/flaky/2")) == 3, timeout=30, what="3 attempts")
    bodies = receiver.bodies("/flaky/2")
    assert len({json.dumps(b, sort_keys=True) for b in bodies}) == 1  # the same event
    wait_for(lambda: [x["status"] for x in api.get(f"/v1/webhooks/{w['id']}/deliveries")
                      .json()["data"]] == ["delivered"], timeout=30, what="delivered")
    dl = api.get(f"/v1/webhooks/{w['id']}/deliveries").json()["data"]
    assert dl[0]["attempts"] == 3 and dl[0]["last_response_code"] == 200
    # sent again by hand: the same event once more
    r = api.post(f"/v1/webhooks/{w['id']}/deliveries/{dl[0]['id']}/retry")
    assert r.status_code == 200 and r.json()["status"] == "pending", r.text
    wait_for(lambda: len(receiver.bodies("/flaky/2")) == 4, timeout=30, what="4th attempt")
    assert receiver.bodies("/flaky/2")[-1]["id"] == bodies[0]["id"]


@pytest.mark.daemon_args(*FAST)
def test_a_hanging_receiver_delays_no_other(stack, receiver):
    redis, d, api, db = stack
    hook(api, receiver.url("/hang"), ["coupon.created"])
    hook(api, receiver.url("/ok"), ["coupon.created"])
    t0 = time.monotonic()
    for i in range(12):
        api.create(code=f"WH-H{i}")
    wait_for(lambda: len(receiver.bodies("/ok")) == 12, timeout=30, what="12 events to /ok")
    with receiver.lock:
        last_ok = max(r[3] for r in receiver.got if r[0] == "/ok")
    assert last_ok - t0 < 5, last_ok - t0  # the other one times out at 1 s per attempt
    hang = sql(db, "SELECT count(*) FROM webhook_deliveries d JOIN webhooks w ON w.id = "
                   "d.webhook_id WHERE w.url LIKE %s", "%/hang")[0][0]
    assert hang == 12
    wait_for(lambda: sql(db, "SELECT count(*) FROM webhook_deliveries d JOIN webhooks w ON "
                             "w.id = d.webhook_id WHERE w.url LIKE %s AND d.last_error "
                             "LIKE %s", "%/hang", "no answer%")[0][0] > 0, timeout=30,
             what="the hanging receiver's attempts timed out")
    err = sql(db, "SELECT d.last_error FROM webhook_deliveries d JOIN webhooks w ON w.id = "
                  "d.webhook_id WHERE w.url LIKE %s AND d.last_error IS NOT NULL", "%/hang")
    assert "within webhook_timeout_ms" in err[0][0], err


@pytest.mark.daemon_args(*FAST)
def test_a_dead_receivers_backlog_starves_no_other(stack, receiver):
    """A receiver that refuses every connection at once, with a backlog of due deliveries
    older than everyone else's: the claims take a few of each endpoint, so the other one
    is served all the same."""
    redis, d, api, db = stack
    from conftest import free_port
    hook(api, f"http://127.0.0.1:{free_port()}/gone", ["coupon.created"])
    for i in range(40):
        api.create(code=f"WH-D{i}")
    ok = hook(api, receiver.url("/ok"), ["coupon.created"])
    t0 = time.monotonic()
    for i in range(20):
        api.create(code=f"WH-E{i}")
    # (events of rows shipped after the endpoint was made: WH-D's too, if they were late)
    def mine():
        return {e["data"]["code"] for e in receiver.bodies("/ok")
                if e["data"]["code"].startswith("WH-E")}
    wait_for(lambda: len(mine()) == 20, timeout=30, what="20 events to /ok")
    assert time.monotonic() - t0 < 10
    # the outcomes are written a moment after the answers (one statement per batch)
    wait_for(lambda: {x["status"] for x in api.get(f"/v1/webhooks/{ok['id']}/deliveries")
                      .json()["data"]} == {"delivered"}, timeout=30, what="all recorded")


@pytest.mark.daemon_args(*FAST, "--webhook_retry_window_s=2")
def test_failed_after_the_window_and_the_endpoint_disabled(stack, receiver):
    redis, d, api, db = stack
    w = hook(api, receiver.url("/flaky/1000"), ["coupon.created"])
    api.create(code="WH-F1")
    wait_for(lambda: [x["status"] for x in api.get(f"/v1/webhooks/{w['id']}/deliveries")
                      .json()["data"]] == ["failed"], timeout=30, what="the delivery failed")
    one = api.get(f"/v1/webhooks/{w['id']}").json()
    assert one["enabled"] is False and "no delivery succeeded" in one["disabled_reason"], one
    dl = api.get(f"/v1/webhooks/{w['id']}/deliveries").json()["data"][0]
    assert dl["attempts"] >= 3 and dl["last_response_code"] == 500
    n = len(receiver.bodies("/flaky/1000"))
    api.create(code="WH-F2")  # a disabled endpoint gets nothing new
    time.sleep(0.5)  # a quiet period: nothing may arrive during it
    assert len(receiver.bodies("/flaky/1000")) == n


@pytest.mark.daemon_args(*FAST)
def test_at_least_once_across_kill_9(stack, receiver):
    """redeemd killed while deliveries are under way (a receiver that takes 0.5 s): after a
    restart every event arrives, some twice, always with the same id and bytes."""
    redis, d, api, db = stack
    hook(api, receiver.url("/slow/0.5"), ["coupon.created"])
    for i in range(5):
        api.create(code=f"WH-K{i}")
    wait_for(lambda: len(receiver.bodies("/slow/0.5")) >= 1, timeout=30, what="one under way")
    d.stop(sig=9, expect=None)
    d.start()
    wait_for(lambda: len({e["id"] for e in receiver.bodies("/slow/0.5")}) == 5, timeout=60,
             what="every event")
    seen = {}
    for e in receiver.bodies("/slow/0.5"):
        assert seen.setdefault(e["id"], e) == e  # a duplicate is the same event
    wait_for(lambda: sql(db, "SELECT count(*) FROM webhook_deliveries WHERE status = "
                             "'delivered'")[0][0] == 5, timeout=60, what="all delivered")


@pytest.mark.daemon_args(*FAST, "--guess_key_per_min=60", "--guess_key_burst=2")
def test_batch_completed_and_fraud_rate_limited(stack, receiver):
    redis, d, api, db = stack
    hook(api, receiver.url("/ok"), ["batch.completed", "fraud.rate_limited"])
    b = api.post("/v1/batches", {"count": 5, "template": {
        "discount": {"type": "percent", "value": 100}, "limits": {"total": 1}}})
    assert b.status_code == 202, b.text
    codes = [api.post("/v1/validate", {"code": f"GUESS-{i}", "user_id": "g", "order_amount": 1,
                                       "currency": "EUR"}).status_code for i in range(6)]
    assert codes == [404, 404, 429, 429, 429, 429], codes
    wait_for(lambda: sorted(e["type"] for e in receiver.bodies("/ok")) ==
             ["batch.completed", "fraud.rate_limited"], timeout=60, what="both events")
    ev = {e["type"]: e for e in receiver.bodies("/ok")}
    assert ev["batch.completed"]["data"]["id"] == b.json()["id"]
    assert ev["batch.completed"]["data"]["created"] == 5
    assert ev["fraud.rate_limited"]["data"]["details"]["budget"] == "key"


@pytest.mark.daemon_args(*FAST)
def test_connections_are_kept_and_a_dropped_one_costs_no_attempt(stack):
    """A receiver that keeps connections open gets many deliveries on each; one that closes
    a kept connection as the next POST arrives costs that delivery no failed attempt: it is
    sent again at once on a new connection."""
    redis, d, api, db = stack
    keep = Receiver(keepalive=True)
    try:
        w1 = hook(api, keep.url("/ok"), ["coupon.created"])
        w2 = hook(api, keep.url("/drop-second"), ["coupon.created"])
        for i in range(30):
            api.create(code=f"WH-KA{i}")
        for w in (w1, w2):
            wait_for(lambda: [x["status"] for x in api.get(
                f"/v1/webhooks/{w['id']}/deliveries?limit=100").json()["data"]] ==
                ["delivered"] * 30, timeout=30, what="30 delivered")
            dl = api.get(f"/v1/webhooks/{w['id']}/deliveries?limit=100").json()["data"]
            assert {x["attempts"] for x in dl} == {1}, dl
        assert len({e["id"] for e in keep.bodies("/ok")}) == 30
        # webhook_per_endpoint (4) at once: a few connections, each reused (one per
        # delivery before)
        assert len(keep.connections("/ok")) <= 8, keep.connections("/ok")
        assert len({e["id"] for e in keep.bodies("/drop-second")}) == 30
        assert keep.dropped > 0  # the path was taken
    finally:
        keep.stop()


@pytest.mark.daemon_args(*FAST, f"--webhook_ca_file={CERTS['ca.pem']}")
def test_https_endpoints_and_their_certificates(stack):
    """https: delivered to a certificate the configured CA signed for the URL's name; refused
    for a name the certificate does not carry and for a certificate no CA vouches for."""
    redis, d, api, db = stack
    good = Receiver(keepalive=True, tls=(CERTS["srv.pem"], CERTS["srv.key"]), host="localhost")
    bad = Receiver(tls=(CERTS["self.pem"], CERTS["self.key"]), host="localhost")
    try:
        w = hook(api, good.url("/ok"), ["coupon.created"])
        by_ip = hook(api, good.url("/ok", host="127.0.0.1"), ["coupon.created"])
        untrusted = hook(api, bad.url("/ok"), ["coupon.created"])
        for i in range(5):
            api.create(code=f"WH-TLS{i}")
        wait_for(lambda: len(good.bodies("/ok")) == 5, timeout=30, what="5 over https")
        with good.lock:
            got = list(good.got)
        assert all(verify(w["secret"], r[1], r[2]) for r in got)
        assert all(r[1]["Host"] == f"localhost:{good.port}" for r in got)

        def error(wh):
            dl = api.get(f"/v1/webhooks/{wh['id']}/deliveries").json()["data"]
            return dl[0]["last_error"] if dl and dl[0]["last_error"] else None
        wait_for(lambda: error(by_ip) and error(untrusted), timeout=30, what="both refused")
        assert "certificate" in error(by_ip), error(by_ip)
        assert "certificate" in error(untrusted), error(untrusted)
        assert not bad.bodies("/ok")
    finally:
        good.stop()
        bad.stop()


@pytest.mark.daemon_args("--webhook_allow_private=true", "--webhook_poll_ms=60000")
def test_events_go_out_when_shipped_not_at_the_next_poll(stack, receiver):
    """The shipper tells the delivery thread when it commits, so an idle thread claims at
    once: with a poll of a minute, events still arrive within seconds (at most a second
    after the first endpoint appears, then as they are shipped)."""
    redis, d, api, db = stack
    hook(api, receiver.url("/ok"), ["coupon.created"])
    made = []

    def arrived():
        made.append(f"WH-P{len(made)}")
        api.create(code=made[-1])
        return receiver.bodies("/ok")
    wait_for(arrived, timeout=10, step=0.3, what="an event well before the poll")
    n = len(made)
    api.create(code="WH-LAST")
    t0 = time.monotonic()
    wait_for(lambda: any(b["data"].get("code") == "WH-LAST" for b in receiver.bodies("/ok")),
             timeout=10, what="the next event as it is shipped")
    assert time.monotonic() - t0 < 5 and n < 30
