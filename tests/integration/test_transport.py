"""HTTP as a hostile client speaks it, on raw sockets: every answer is in the JSON envelope
(also the refusals a library would answer with its own HTML page), requests arrive within a
deadline, connections are capped, pipelined requests are answered in order, and no input
takes the daemon down."""
import json
import socket
import time

import pytest
import requests

from conftest import Api, Daemon, key_loaded, make_key, metric, wait_for

H = b"Host: t\r\n"


class Conn:
    """A raw client connection that reads responses one by one (pipelining included)."""

    def __init__(self, port, timeout=5.0):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.s.close()

    def send(self, data):
        self.s.sendall(data)

    def fill(self):
        got = self.s.recv(65536)
        if not got:
            raise ConnectionError(f"closed after {self.buf!r}")
        self.buf += got

    def response(self, timeout=5.0, head=False):
        """(status, headers with lower-case names, body), by Content-Length (none for the
        answer to a HEAD)."""
        self.s.settimeout(timeout)
        while b"\r\n\r\n" not in self.buf:
            self.fill()
        raw, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
        assert status in (100, 204) or "content-length" in headers, headers
        n = 0 if head else int(headers.get("content-length", 0))
        while len(self.buf) < n:
            self.fill()
        body, self.buf = self.buf[:n], self.buf[n:]
        return status, headers, body

    def closed(self, wait=2.0):
        """Whether the server closes the connection (within wait)."""
        self.s.settimeout(wait)
        try:
            return self.s.recv(1) == b""
        except socket.timeout:
            return False
        except ConnectionResetError:
            return True


def exchange(port, data, timeout=5.0):
    """Sends data on a fresh connection; returns (status, headers, body, closed), closed
    telling whether the server then closed the connection."""
    with Conn(port, timeout) as c:
        c.send(data)
        status, headers, body = c.response(timeout)
        return status, headers, body, c.closed()


def api_port(api):
    return int(api.base.rsplit(":", 1)[1])


def envelope(status, headers, body, code):
    assert headers["content-type"].startswith("application/json"), headers
    err = json.loads(body)["error"]
    assert err["code"] == code, (status, err)
    assert err["request_id"] == headers["x-request-id"]
    return err


@pytest.mark.parametrize("raw,status,code", [
    (b"GARBAGE\r\n\r\n", 400, "invalid_request"),
    (b"\x00\x01\x02\r\n\r\n", 400, "invalid_request"),
    (b"GET /healthz HTTP/2.0\r\n" + H + b"\r\n", 505, "http_version_not_supported"),
    (b"GET /healthz HTTP/1.1\r\n\r\n", 400, "invalid_request"),  # no Host
    (b"GET /healthz HTTP/1.1\r\n" + H + b"Bad Header: y\r\n\r\n", 400, "invalid_request"),
    (b"GET /healthz HTTP/1.1\r\n" + H + b"X: a\r\n folded\r\n\r\n", 400, "invalid_request"),
    (b"GET /healthz HTTP/1.1\r\n" + H + b"X: a\x01b\r\n\r\n", 400, "invalid_request"),
    (b"GET /he#lthz HTTP/1.1\r\n" + H + b"\r\n", 400, "invalid_request"),
    (b"POST /v1/validate HTTP/1.1\r\n" + H + b"Content-Length: 5\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n", 400, "invalid_request"),
    (b"POST /v1/validate HTTP/1.1\r\n" + H + b"Content-Length: 1, 2\r\n\r\n", 400,
     "invalid_request"),
    (b"POST /v1/validate HTTP/1.1\r\n" + H + b"Content-Length: -5\r\n\r\n", 400,
     "invalid_request"),
    (b"POST /v1/validate HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip, chunked\r\n\r\n", 501,
     "not_implemented"),
    (b"POST /v1/validate HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n", 400,
     "invalid_request"),
    # a declared body over the limit is refused before a byte of it is read
    (b"POST /v1/validate HTTP/1.1\r\n" + H + b"Content-Length: 99999999\r\n\r\n", 413,
     "payload_too_large"),
    (b"GET /healthz HTTP/1.1\r\n" + H + b"Expect: magic\r\n\r\n", 417, "expectation_failed"),
    (b"GET /nope HTTP/1.1\r\n" + H + b"\r\n", 404, "not_found"),
    (b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", 404, "not_found"),
    (b"GET * HTTP/1.1\r\n" + H + b"\r\n", 400, "invalid_request"),
])
def test_every_refusal_is_json(daemon, raw, status, code):
    st, headers, body, closed = exchange(daemon.port, raw)
    assert st == status, body
    envelope(st, headers, body, code)
    if status not in (404,) or raw.startswith(b"CONNECT"):
        # a refusal of the request itself ends the connection (a CONNECT too: its client
        # may still believe it talks through a tunnel)
        assert closed and headers["connection"] == "close"
    assert requests.get(daemon.url + "/healthz", timeout=5).status_code == 200


def test_methods_and_allow(daemon):
    st, headers, body, _ = exchange(daemon.port, b"BREW /healthz HTTP/1.1\r\n" + H + b"\r\n")
    envelope(st, headers, body, "method_not_allowed")
    assert st == 405 and headers["allow"] == "GET, HEAD, OPTIONS"
    st, headers, body, _ = exchange(daemon.port,
                                    b"DELETE /v1/coupons/ABC HTTP/1.1\r\n" + H + b"\r\n")
    assert st == 405 and headers["allow"] == "GET, HEAD, PATCH, OPTIONS"
    envelope(st, headers, body, "method_not_allowed")
    st, headers, body, _ = exchange(daemon.port, b"OPTIONS /v1/coupons HTTP/1.1\r\n" + H +
                                    b"\r\n")
    assert st == 204 and headers["allow"] == "POST, GET, HEAD, OPTIONS" and body == b""
    with Conn(daemon.port) as c:
        c.send(b"HEAD /healthz HTTP/1.1\r\n" + H + b"\r\n" + b"GET /healthz HTTP/1.1\r\n" + H +
               b"\r\n")
        st, headers, body = c.response(head=True)
        assert st == 200 and int(headers["content-length"]) > 0 and body == b""
        st, headers, body = c.response()  # no body came between the two answers
        assert st == 200 and json.loads(body) == {"status": "ok"}


def test_pipelined_requests_are_answered_in_order(daemon):
    with Conn(daemon.port) as c:
        c.send(b"GET /healthz HTTP/1.1\r\n" + H + b"X-Request-Id: one\r\n\r\n"
               b"GET /nope HTTP/1.1\r\n" + H + b"X-Request-Id: two\r\n\r\n"
               b"GET /healthz HTTP/1.1\r\n" + H + b"X-Request-Id: three\r\n\r\n")
        got = []
        for _ in range(3):
            st, headers, _ = c.response()
            got.append((st, headers["x-request-id"]))
    assert got == [(200, "one"), (404, "two"), (200, "three")]


def small_window_conn(port):
    """A raw connection whose receive buffer is a few KB (set before connecting, so the
    window offered is small): the daemon's answers fill its socket and wait for writes."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(10)
    s.connect(("127.0.0.1", port))
    c = Conn.__new__(Conn)
    c.s, c.buf = s, b""
    return c


def test_answers_larger_than_the_socket_arrive_whole_and_in_order(daemon):
    """Answers are written at once and only the rest waits for the socket (httpd.c,
    conn_flush): 30 pipelined requests for the 180 KB OpenAPI document, to a client with a
    small window that reads only once all are sent, are more than the socket holds. Every
    answer arrives whole and in order, the requests held back meanwhile are served, and
    the connection answers at once again afterwards."""
    doc = requests.get(daemon.url + "/openapi.json", timeout=10).content
    assert len(doc) > 100_000
    with small_window_conn(daemon.port) as c:
        c.send(b"".join(b"GET /openapi.json HTTP/1.1\r\n" + H + b"X-Request-Id: r%d\r\n\r\n" % i
                        for i in range(30)))
        for i in range(30):
            st, headers, body = c.response(timeout=20)
            assert (st, headers["x-request-id"]) == (200, f"r{i}")
            assert body == doc, f"answer {i}: {len(body)} bytes"
        c.send(b"GET /healthz HTTP/1.1\r\n" + H + b"\r\n")
        st, _, body = c.response()
        assert st == 200 and json.loads(body) == {"status": "ok"}


@pytest.fixture()
def impatient(workdir, redis_srv, pg):
    """A daemon that gives a client 1 s to take its answers (idle_timeout_s)."""
    d = Daemon(workdir, redis_srv.port, pg.conninfo, "--idle_timeout_s=1").start()
    yield d
    d.stop()


def test_a_client_that_stops_reading_is_let_go(impatient):
    """Answers a client does not read wait in the socket and then in the daemon, for at
    most idle_timeout_s without progress; then the connection is closed (it must not be
    held forever, nor its output kept)."""
    d = impatient

    def open_conns():
        return metric(requests.get(d.url + "/metrics", timeout=5).text,
                      "redeemd_http_connections")
    # the /metrics request itself (earlier clients' closes may still be on their way)
    wait_for(lambda: open_conns() == 1, what="no other connection open")
    with small_window_conn(d.port) as c:
        c.send(b"".join(b"GET /openapi.json HTTP/1.1\r\n" + H + b"\r\n" for _ in range(40)))
        wait_for(lambda: open_conns() == 2, what="the request connection counted")
        wait_for(lambda: open_conns() == 1, timeout=15, what="the stalled connection closed")
        with pytest.raises((ConnectionError, OSError)):
            while True:  # what was sent before the close, then the end
                c.fill()


def test_chunked_body_and_continue(daemon, keys):
    auth = f"Authorization: Bearer {keys['redeem']}\r\n".encode()
    body = b'{"code":"NOPE-1","user_id":"u","order_amount":100,"currency":"EUR"}'
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (body[:10], body[10:])) + \
        b"0\r\nX-Trailer: t\r\n\r\n"
    st, headers, resp, _ = exchange(daemon.port, b"POST /v1/validate HTTP/1.1\r\n" + H + auth +
                                    b"Content-Type: application/json\r\n"
                                    b"Transfer-Encoding: chunked\r\n\r\n" + chunked)
    assert st == 404 and json.loads(resp)["error"]["code"] == "coupon_not_found", resp
    # Expect: 100-continue: the client sends the body only after the server's word
    with Conn(daemon.port) as c:
        c.send(b"POST /v1/validate HTTP/1.1\r\n" + H + auth +
               b"Content-Type: application/json\r\nExpect: 100-continue\r\n"
               b"Content-Length: %d\r\n\r\n" % len(body))
        assert c.response()[0] == 100
        c.send(body)
        st, _, resp = c.response()
        assert st == 404 and json.loads(resp)["error"]["code"] == "coupon_not_found"


@pytest.fixture()
def strict(workdir, redis_srv, pg):
    """A daemon with a short request deadline."""
    d = Daemon(workdir, redis_srv.port, pg.conninfo, "--request_timeout_s=1").start()
    yield d
    d.stop()


@pytest.fixture()
def capped(workdir, redis_srv, pg):
    """A daemon with a small connection cap: 200 per worker, 2 workers."""
    d = Daemon(workdir, redis_srv.port, pg.conninfo, "--max_connections=200",
               "--request_timeout_s=60").start()
    yield d
    d.stop()


def test_slow_client_gets_408(strict):
    """A client trickling its head (a byte every 300 ms, so no inactivity timeout ever
    fires) is answered 408 once the request deadline passes; so is a body that stops."""
    with Conn(strict.port, 10) as c:
        t0 = time.monotonic()
        for b in b"GET /healthz HTTP/1.1\r\nHost: slowly-but-surely\r\n":
            try:
                c.send(bytes([b]))
            except OSError:
                break
            time.sleep(0.3)
            c.s.settimeout(0.01)
            try:
                c.fill()
                break
            except socket.timeout:
                pass
        assert c.buf.startswith(b"HTTP/1.1 408 "), c.buf
        assert time.monotonic() - t0 < 5
        status, headers, body = c.response()
        envelope(status, headers, body, "request_timeout")
        assert c.closed()
    st, headers, body, closed = exchange(strict.port, b"POST /v1/validate HTTP/1.1\r\n" + H +
                                         b"Content-Length: 10\r\n\r\n12345")
    assert st == 408 and closed
    m = requests.get(strict.url + "/metrics", timeout=5).text
    assert "redeemd_http_request_timeouts_total 2" in m


def test_idle_connections_and_the_cap(capped, redis_srv):
    """Thousands of idle connections cost nothing: a canary redeems through them. At the
    cap (200 per worker here) the longest idle ones are closed to make room; when none is
    idle (every connection is mid-request) a new one gets 503 in the envelope."""
    api = Api(capped.url, make_key(redis_srv.port, "admin,redeem"))
    wait_for(lambda: key_loaded(api.base, api.key), what="key loaded")
    c = api.create()
    idle = [socket.create_connection(("127.0.0.1", capped.port), timeout=5)
            for _ in range(2000)]
    try:
        for i in range(20):
            canary = Api(capped.url, api.key)  # a fresh connection each time
            r = canary.redeem(c["code"], user=f"canary{i}")
            assert r.status_code == 201, r.text
        m = requests.get(capped.url + "/metrics", timeout=5).text
        evicted = [int(line.split()[1]) for line in m.splitlines()
                   if line.startswith("redeemd_http_connections_evicted_total ")]
        assert evicted and evicted[0] >= 1500, evicted
    finally:
        for s in idle:
            s.close()
    # every connection mid-request (a head begun): nothing to evict
    busy = []
    try:
        for _ in range(700):  # more than both workers' 200 (the kernel spreads them)
            s = socket.create_connection(("127.0.0.1", capped.port), timeout=5)
            s.sendall(b"GET /healthz HTTP/1.1\r\n")
            busy.append(s)
        got = {}

        def refused():  # the kernel may still be handing the last ones to the workers
            got["r"] = exchange(capped.port, b"GET /healthz HTTP/1.1\r\n" + H + b"\r\n")
            return got["r"][0] == 503
        wait_for(refused, what="a new connection refused at the cap")
        st, headers, body, closed = got["r"]
        assert closed, body
        assert "too many connections" in envelope(st, headers, body, "unavailable")["message"]
    finally:
        for s in busy:
            s.close()
    wait_for(lambda: requests.get(capped.url + "/healthz", timeout=5).status_code == 200,
             what="served again")


def test_repeated_filters_are_bounded(api, keys):
    """A filter given many times used to write past a fixed array of 16 parameters and kill
    the daemon; now a filter means "any of" up to 20 values, one statement parameter, and
    past 20 it is a 400 naming it."""
    fraud = Api(api.base, keys["fraud"])
    c = api.create()
    for u in ("rf-a", "rf-b", "rf-c"):
        assert api.redeem(c["code"], user=u).status_code == 201
    many = "&".join(f"user_id=x{i}" for i in range(40))
    r = fraud.get(f"/v1/transactions?{many}")
    assert r.status_code == 400 and r.json()["error"]["details"]["field"] == "user_id", r.text
    twenty = "&".join(f"user_id=x{i}" for i in range(18)) + "&user_id=rf-a&user_id=rf-b"

    def users():
        page = fraud.get(f"/v1/transactions?{twenty}&code={c['code']}&kind=redeem&kind=pay")
        assert page.status_code == 200, page.text
        return sorted(t["user_id"] for t in page.json()["data"])
    wait_for(lambda: users() == ["rf-a", "rf-b"], what="any of the users")
    r = fraud.get("/v1/transactions?limit=5&limit=6")
    assert r.status_code == 400 and r.json()["error"]["details"]["field"] == "limit"
    r = fraud.get("/v1/transactions?" + "&".join(f"code=A{i}" for i in range(70)))
    assert r.status_code == 400 and r.json()["error"]["details"]["field"] == "query"
    st, headers, body, _ = exchange(api_port(api), b"GET /v1/transactions?code=%zz HTTP/1.1\r\n" +
                                    H + f"Authorization: Bearer {keys['fraud']}\r\n".encode() +
                                    b"\r\n")
    assert st == 400 and json.loads(body)["error"]["details"]["field"] == "query", body
    # every filter of the coupon listing takes the same rule
    r = api.get("/v1/coupons?" + "&".join(f"campaign=c{i}" for i in range(21)))
    assert r.status_code == 400 and r.json()["error"]["details"]["field"] == "campaign"
    r = api.get(f"/v1/coupons?prefix={c['code']}&kind=voucher&kind=discount&status=used"
                "&status=expired")
    assert [x["code"] for x in r.json()["data"]] == [c["code"]], r.text
    assert api.get("/healthz").status_code == 200
