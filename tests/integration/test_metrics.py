"""GET /metrics: Prometheus text that counts what the daemon did, and its access rule."""
import json
import re
import socket

import pytest
import requests

from conftest import Daemon, wait_for

LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})? (-?[0-9.eE+-]+|NaN|\+Inf)$')


def scrape(url):
    r = requests.get(url + "/metrics", timeout=10)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    out, types = {}, {}
    for line in r.text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            types[name] = kind
            continue
        if line.startswith("#"):
            continue
        m = LINE.match(line)
        assert m, f"not Prometheus text: {line!r}"
        labels = tuple(sorted(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(3) or "")))
        key = (m.group(1), labels)
        assert key not in out, f"duplicate series {line!r}"
        out[key] = float(m.group(4))
    # every series belongs to a declared family
    for name, _ in out:
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        assert name in types or base in types, name
    return out


def val(m, name, **labels):
    return m.get((name, tuple(sorted(labels.items()))), 0.0)


def test_counts_requests_errors_latency_and_shipping(stack):
    redis, d, api, conninfo = stack
    before = scrape(d.url)
    c = api.create(limits={"total": 2})
    for i in range(3):
        api.redeem(c["code"], user=f"u{i}")
    assert api.validate("NOPE-NOPE").status_code == 404
    assert api.get("/v1/nowhere").status_code == 404
    m = scrape(d.url)

    def delta(name, **labels):
        return val(m, name, **labels) - val(before, name, **labels)

    route = "/v1/redemptions"
    assert delta("redeemd_http_requests_total", route=route, status="201") == 2
    assert delta("redeemd_http_requests_total", route=route, status="422") == 1
    assert delta("redeemd_http_requests_total", route="/v1/validate", status="404") == 1
    assert delta("redeemd_http_requests_total", route="unmatched", status="404") == 1
    assert delta("redeemd_errors_total", code="limit_total_reached") == 1
    assert delta("redeemd_errors_total", code="coupon_not_found") == 1
    assert delta("redeemd_http_requests_total", route="/metrics", status="200") == 1
    # the histogram counts every answered request of the route, cumulative to +Inf
    assert val(m, "redeemd_http_request_duration_seconds_count", route=route) == 3
    assert val(m, "redeemd_http_request_duration_seconds_bucket", route=route, le="+Inf") == 3
    buckets = sorted((float(dict(k[1])["le"]), v) for k, v in m.items()
                     if k[0] == "redeemd_http_request_duration_seconds_bucket"
                     and dict(k[1])["route"] == route and dict(k[1])["le"] != "+Inf")
    assert all(a[1] <= b[1] for a, b in zip(buckets, buckets[1:]))
    # three redeems and one validate went to Redis, among the key loads
    assert val(m, "redeemd_redis_roundtrip_seconds_count") >= 4
    assert val(m, "redeemd_redis_connects_total") >= 2  # one per worker
    assert val(m, "process_cpu_seconds_total") > 0
    assert val(m, "process_resident_memory_bytes") > 1e6
    assert val(m, "redeemd_workers") == 2
    assert val(m, "redeemd_postgres_up") == 1
    assert val(m, "redeemd_outbox_backlog_limit") == 1000000
    # 3 redeem attempts, 1 unknown-code validate and the coupon's creation reach the ledger
    wait_for(lambda: val(scrape(d.url), "redeemd_shipper_rows_total") >= 5, timeout=20,
             what="rows shipped")
    m = scrape(d.url)
    assert val(m, "redeemd_shipper_batches_total") >= 1
    assert val(m, "redeemd_shipper_batch_seconds_count") == val(m, "redeemd_shipper_batches_total")
    assert val(m, "redeemd_shipper_dead_letters_total") == 0
    wait_for(lambda: val(scrape(d.url), "redeemd_outbox_backlog") == 0, timeout=20,
             what="backlog zero")


def get_from(source, port, path="/metrics"):
    """GET path from a chosen source address: every 127.x address is this machine's, so a
    second client address needs no network of its own."""
    with socket.create_connection(("127.0.0.1", port), timeout=5,
                                  source_address=(source, 0)) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while True:
            got = s.recv(65536)
            if not got:
                break
            data += got
    head, body = data.split(b"\r\n\r\n", 1)
    return int(head.split()[1]), body


def test_loopback_only_by_default(daemon):
    assert get_from("127.0.0.1", daemon.port)[0] == 200
    assert get_from("127.0.0.2", daemon.port)[0] == 200  # the whole of 127.0.0.0/8


@pytest.mark.daemon_args("--metrics=127.0.0.2/32,10.0.0.0/8")
def test_allow_list(stack):
    """Only the listed addresses read /metrics; anything else gets 403 in the envelope."""
    redis, d, api, conninfo = stack
    status, body = get_from("127.0.0.1", d.port)
    assert status == 403
    err = json.loads(body)["error"]
    assert err["code"] == "forbidden" and "metrics=" in err["message"]
    status, body = get_from("127.0.0.2", d.port)
    assert status == 200 and b"redeemd_workers 2" in body
    assert get_from("127.0.0.2", d.port, "/healthz")[0] == 200


@pytest.mark.daemon_args("--metrics=off")
def test_can_be_switched_off(stack):
    redis, d, api, conninfo = stack
    r = requests.get(d.url + "/metrics", timeout=5)
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
