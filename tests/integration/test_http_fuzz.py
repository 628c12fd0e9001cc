"""An HTTP-level fuzzer: valid requests mutated (methods, paths, headers, query strings,
bodies, chunking, pipelining, sends cut in fragments) and sent on many connections at once.
Every answer must be a well-formed HTTP/1.1 response, every refusal the JSON envelope; the
daemon must not crash (the sanitizer pass checks its log when it stops), and redemptions
must be exact afterwards. 20,000 requests in the sanitizer pass, 5,000 in the release pass;
RD_HTTP_FUZZ_REQUESTS overrides. The generator is seeded: a failure names its seed."""
import json
import os
import random
import socket
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import SANITIZED, Api, Daemon, key_loaded, make_key, wait_for

REQUESTS = int(os.environ.get("RD_HTTP_FUZZ_REQUESTS", 20000 if SANITIZED else 5000))
THREADS = 16


class Gen:
    """Requests, valid and mutated, from one seeded generator."""

    def __init__(self, seed, key, code):
        self.r = random.Random(seed)
        self.key = key
        self.code = code

    def pick(self, xs):
        return xs[self.r.randrange(len(xs))]

    def junk(self, n):
        return bytes(self.r.randrange(256) for _ in range(n))

    def base(self):
        """(method, target, headers as a list of pairs, body bytes)."""
        code = self.code
        body_redeem = {"code": code, "user_id": f"f{self.r.randrange(10**6)}",
                       "order_amount": self.r.randrange(1, 10**6), "currency": "EUR"}
        choices = [
            ("GET", "/healthz", [], b""),
            ("GET", "/readyz", [], b""),
            ("GET", f"/v1/coupons/{code}", [], b""),
            ("GET", "/v1/coupons?limit=3&status=used&status=active&kind=discount", [], b""),
            ("GET", "/v1/transactions?limit=2&kind=redeem&kind=validate&user_id=x", [], b""),
            ("GET", "/v1/stats", [], b""),
            ("POST", "/v1/validate", [("Content-Type", "application/json")],
             json.dumps(body_redeem).encode()),
            ("POST", "/v1/redemptions", [("Content-Type", "application/json"),
                                         ("Idempotency-Key", uuid.UUID(int=self.r.getrandbits(128)).hex)],
             json.dumps(body_redeem).encode()),
            ("POST", "/v1/coupons", [("Content-Type", "application/json")],
             json.dumps({"discount": {"type": "fixed", "value": 100}, "currency": "EUR",
                         "limits": {"total": 5}}).encode()),
            ("PATCH", f"/v1/coupons/{code}", [("Content-Type", "application/json")],
             json.dumps({"metadata": {"k": str(self.r.randrange(100))}}).encode()),
            ("GET", "/v1/redemptions/rdm_0001_aaaaaaaaaaaaaaaaaaaa", [], b""),
            ("OPTIONS", "/v1/coupons", [], b""),
            ("HEAD", "/healthz", [], b""),
            ("GET", "/metrics", [], b""),
        ]
        m, t, h, b = self.pick(choices)
        return m, t, [("Host", "fuzz")] + ([("Authorization", f"Bearer {self.key}")]
                                            if self.r.random() < 0.9 else []) + h, b

    def mutate(self, m, t, h, b):
        r = self.r
        for _ in range(r.choice([0, 1, 1, 2, 3])):
            what = r.randrange(12)
            if what == 0:
                m = self.pick(["get", "BREW", "DELETE", "PUT", "TRACE", "CONNECT", "G\x01T",
                               "X" * 40, "POST", "PATCH"])
            elif what == 1:
                t = t + self.pick(["/", "/x", "%00", "%zz", "?a=%", "#f", "/../..", "//",
                                   "?" + "&".join(["code=A"] * r.randrange(1, 80)),
                                   "?limit=" + "9" * r.randrange(1, 30), "/" + "a" * 600,
                                   "?x=" + "%41" * 200, "\u00e9".encode().decode("latin-1")])
            elif what == 2 and h:
                h = [p for p in h if p[0] != self.pick([p[0] for p in h])]
            elif what == 3:
                h = h + [self.pick([("X-Junk", "a" * r.randrange(1, 20000)),
                                    ("Content-Length", self.pick(["-1", "1, 2", "abc",
                                                                  "99999999999999999999"])),
                                    ("Transfer-Encoding", self.pick(["gzip", "chunked, gzip",
                                                                     "identity"])),
                                    ("Expect", self.pick(["100-continue", "magic"])),
                                    ("Connection", self.pick(["close", "keep-alive", "x"])),
                                    ("Content-Type", self.pick(["text/plain", "application/jsonx",
                                                                "application/json; charset=x"])),
                                    ("Host", "second"), ("Bad Name", "v"), ("X", "a\x01b"),
                                    ("Accept", "text/csv"), ("X-Request-Id", "r" * r.randrange(200)),
                                    ("Idempotency-Key", "k" * r.randrange(300))])]
            elif what == 4:
                h = h + [(f"X-F{i}", "v") for i in range(r.randrange(50, 80))]
            elif what == 5 and b:
                cut = r.randrange(len(b))
                b = b[:cut] + self.junk(r.randrange(1, 8)) + b[cut + 1:]
            elif what == 6:
                b = self.pick([b"{", b"[]", b"null", b'{"code":' + b"[" * 3000,
                               b'{"order_amount": 1e400}', b'{"a":1,"a":2}', self.junk(64),
                               b"\xff\xfe", json.dumps({"code": "x" * 100000}).encode()])
            elif what == 7:
                m = m + " " + self.pick(["", "x"])  # a malformed request line
            elif what == 8:
                t = self.pick(["*", "http://h/healthz", "example.com:443", "", "/healthz HTTP/1.1"])
            elif what == 9:
                h = [(k.lower() if r.random() < 0.5 else k.upper(), v) for k, v in h]
        return m, t, h, b

    def encode(self, m, t, h, b):
        r = self.r
        version = self.pick(["HTTP/1.1"] * 18 + ["HTTP/1.0", "HTTP/2.0"])
        chunked = b and r.random() < 0.15
        lines = [f"{m} {t} {version}".encode("latin-1", "replace")]
        for k, v in h:
            lines.append(f"{k}: {v}".encode("latin-1", "replace"))
        if chunked:
            lines.append(b"Transfer-Encoding: chunked")
            out, i = [], 0
            while i < len(b):
                n = r.randrange(1, 64)
                out.append(b"%x\r\n%s\r\n" % (len(b[i:i + n]), b[i:i + n]))
                i += n
            out.append(b"0\r\n\r\n")
            body = b"".join(out)
            if r.random() < 0.05:
                body = body.replace(b"\r\n", b"\n", 1)
        else:
            if b or m in ("POST", "PATCH"):
                lines.append(b"Content-Length: %d" % len(b))
            body = b
        return b"\r\n".join(lines) + b"\r\n\r\n" + body


class Reader:
    """Reads responses off one connection, strictly."""

    def __init__(self, s):
        self.s, self.buf = s, b""

    def fill(self):
        got = self.s.recv(65536)
        if not got:
            raise EOFError
        self.buf += got

    def response(self, head_only):
        while b"\r\n\r\n" not in self.buf:
            self.fill()
        raw, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = raw.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        assert len(parts) == 3 and parts[0] == "HTTP/1.1" and parts[1].isdigit(), lines[0]
        status = int(parts[1])
        headers = {}
        for line in lines[1:]:
            k, sep, v = line.partition(":")
            assert sep and k and k.strip() == k, f"malformed header line {line!r}"
            headers[k.lower()] = v.strip()
        if status == 100:
            return status, headers, b""
        if head_only or status == 204:
            return status, headers, b""
        if headers.get("transfer-encoding") == "chunked":
            body = b""
            while True:
                while b"\r\n" not in self.buf:
                    self.fill()
                size, self.buf = self.buf.split(b"\r\n", 1)
                n = int(size, 16)
                while len(self.buf) < n + 2:
                    self.fill()
                body += self.buf[:n]
                assert self.buf[n:n + 2] == b"\r\n"
                self.buf = self.buf[n + 2:]
                if n == 0:
                    return status, headers, body
        if "content-length" not in headers:
            # a stream to an HTTP/1.0 client: it ends with the connection
            assert headers.get("connection") == "close", headers
            try:
                while True:
                    self.fill()
            except EOFError:
                pass
            body, self.buf = self.buf, b""
            return status, headers, body
        n = int(headers["content-length"])
        while len(self.buf) < n:
            self.fill()
        body, self.buf = self.buf[:n], self.buf[n:]
        return status, headers, body


def check(status, headers, body, method):
    assert 100 <= status < 600
    assert "x-request-id" in headers
    if status >= 400:
        assert headers["content-type"] == "application/json", headers
        if method != "HEAD":
            err = json.loads(body)["error"]
            assert isinstance(err["code"], str) and err["code"], err
            assert err["request_id"] == headers["x-request-id"]
    elif headers.get("content-type") == "application/json" and method != "HEAD":
        json.loads(body)


def session(port, gen, n, counts, lock):
    """n requests over connections of this thread: pipelined now and then, cut into
    fragments now and then; a connection the server closes is replaced."""
    sent = 0
    while sent < n:
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        rd = Reader(s)
        try:
            while sent < n:
                batch = [gen.mutate(*gen.base()) if gen.r.random() < 0.7 else gen.base()
                         for _ in range(gen.pick([1] * 8 + [2, 3, 5]))]
                data = b"".join(gen.encode(*q) for q in batch)
                if gen.r.random() < 0.2:  # cut into fragments
                    i = 0
                    while i < len(data):
                        k = gen.r.randrange(1, 200)
                        s.sendall(data[i:i + k])
                        i += k
                else:
                    s.sendall(data)
                sent += len(batch)
                closed = False
                for m, _, _, _ in batch:
                    try:
                        st, headers, body = rd.response(m.strip() == "HEAD")
                        while st == 100:
                            st, headers, body = rd.response(m.strip() == "HEAD")
                    except (EOFError, ConnectionResetError):
                        closed = True  # refused, closed: what follows it was not read
                        break
                    check(st, headers, body, m.strip())
                    with lock:
                        counts[st] = counts.get(st, 0) + 1
                    if headers.get("connection") == "close":
                        closed = True
                        break
                if closed:
                    break
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server closed after a refusal while this side still sent
        finally:
            s.close()


@pytest.fixture()
def fuzzed(workdir, redis_srv, pg):
    d = Daemon(workdir, redis_srv.port, pg.conninfo, "--request_timeout_s=1").start()
    yield d
    d.stop()  # with RD_SANITIZED=1: no sanitizer report in its log


def test_http_fuzz(fuzzed, redis_srv):
    d = fuzzed
    api = Api(d.url, make_key(redis_srv.port, "admin,redeem,fraud"))
    wait_for(lambda: key_loaded(api.base, api.key), what="key loaded")
    target = api.create()
    counts, lock = {}, threading.Lock()
    per = REQUESTS // THREADS
    seed = int(os.environ.get("RD_HTTP_FUZZ_SEED", "20261130"))
    with ThreadPoolExecutor(THREADS) as ex:
        futures = [ex.submit(session, d.port, Gen(seed + i, api.key, target["code"]), per,
                             counts, lock) for i in range(THREADS)]
        for f in futures:
            f.result()  # a failed check raises here, with its seed in the traceback
    answered = sum(counts.values())
    print(f"http fuzz: seed {seed}, {per * THREADS} requests sent, {answered} answered: "
          f"{dict(sorted(counts.items()))}")
    assert answered >= REQUESTS // 2 and 500 not in counts, counts
    # the daemon serves, and counts exactly, after all of it
    c = api.create(limits={"total": 30, "per_user": 1})
    with ThreadPoolExecutor(16) as ex:
        got = list(ex.map(lambda i: Api(d.url, api.key).redeem(c["code"], user=f"x{i}")
                          .status_code, range(60)))
    assert got.count(201) == 30 and got.count(422) == 30, got
    assert api.get(f"/v1/coupons/{c['code']}").json()["used"]["total"] == 30
