"""Operations: configuration errors, API key lifecycle, readiness, migrations, compose file."""
import os
import shutil
import subprocess

import psycopg2
import pytest
import requests

from conftest import (REDEEMCTL, REDEEMD, ROOT, Api, Daemon, RedisServer, ctl, key_loaded,
                      make_key, wait_for)


@pytest.mark.parametrize("flag,needle", [
    ("--port=70000", "port must be an integer from 0 to 65535"),
    ("--workers=abc", "workers must be an integer"),
    ("--redis_host=no-such-host.invalid", "cannot resolve"),
    ("--listen_addr=localhost", "numeric IPv4"),
    ("--log_level=chatty", "log_level must be debug, info, warn or error"),
    ("--max_body_bytes=10", "max_body_bytes must be an integer from 256"),
    ("--bogus=1", "unknown setting"),
    ("--access_log=perhaps", "true or false"),
    ("--pg_conninfo=host=x nosuchkeyword=1", "nosuchkeyword"),
    ("--metrics=10.0.0.0/33", "a list of addresses and CIDR blocks"),
])
def test_bad_config_is_refused_clearly(flag, needle):
    p = subprocess.run([REDEEMD, flag], capture_output=True, text=True, timeout=10)
    assert p.returncode == 2
    assert needle in p.stderr and flag.split("=")[0].lstrip("-") in p.stderr, p.stderr


def test_config_file_and_env(tmp_path):
    conf = tmp_path / "r.conf"
    conf.write_text("port = 99999\n")
    p = subprocess.run([REDEEMD, f"--config={conf}"], capture_output=True, text=True,
                       timeout=10)
    assert p.returncode == 2 and f"{conf}:1" in p.stderr
    env = dict(os.environ, REDEEMD_IDLE_TIMEOUT_S="0")
    p = subprocess.run([REDEEMD], capture_output=True, text=True, timeout=10, env=env)
    assert p.returncode == 2 and "REDEEMD_IDLE_TIMEOUT_S" in p.stderr
    p = subprocess.run([REDEEMD, "--help"], capture_output=True, text=True, timeout=10)
    assert p.returncode == 0 and "--redis_port" in p.stdout


def test_key_revocation(daemon, redis_srv, keys):
    key = make_key(redis_srv.port, "redeem", "short-lived")
    api = Api(daemon.url, key)
    body = {"code": "ANY-CODE", "user_id": "u", "order_amount": 1, "currency": "EUR"}
    wait_for(lambda: key_loaded(daemon.url, key, ok=(403,)), what="new key active")
    key_id = key.split("_")[1]
    listing = ctl(redis_srv.port, "keys", "list").stdout
    assert key_id in listing and "short-lived" in listing and key not in listing
    ctl(redis_srv.port, "keys", "revoke", key_id)
    wait_for(lambda: api.post("/v1/validate", body).status_code == 401, what="key revoked")
    assert "revoked" in ctl(redis_srv.port, "keys", "list").stdout
    assert ctl(redis_srv.port, "keys", "revoke", "zzzzzzzz", check=False).returncode == 1
    p = ctl(redis_srv.port, "keys", "create", "--scope", "root", check=False)
    assert p.returncode == 2 and "--scope" in p.stderr
    # only hashes are stored
    stored = redis_srv.client().hgetall("rd:apikeys")
    assert all(key not in k and key not in v for k, v in stored.items())


def test_readyz_reports_postgres_without_failing(workdir, redis_srv):
    """PostgreSQL down: redemptions go on (the outbox keeps them), so the instance stays
    ready; the ledger's state is in the body and in /metrics."""
    d = Daemon(workdir, redis_srv.port, "host=127.0.0.1 port=1 dbname=x user=x").start(
        wait_ready=False)
    try:
        def reported():
            r = requests.get(d.url + "/readyz", timeout=5)
            j = r.json()
            return r.status_code == 200 and j["status"] == "ready" and \
                j["ledger"]["postgres"] == "down" and j["ledger"]["state"] == "down" and \
                j["checks"]["redis"] == "ok"
        wait_for(reported, what="readyz reporting postgres down")
        assert requests.get(d.url + "/healthz", timeout=5).status_code == 200
        m = requests.get(d.url + "/metrics", timeout=5).text
        assert "redeemd_postgres_up 0" in m
        assert "redeemd_shipper_last_commit_timestamp_seconds 0.000" in m
    finally:
        d.stop()


def test_redis_down_at_start(workdir, pg):
    d = Daemon(workdir, 1, pg.conninfo).start(wait_ready=False)
    try:
        r = requests.post(d.url + "/v1/validate", json={}, timeout=5,
                          headers={"Authorization": "Bearer x"})
        assert r.status_code == 503
        assert requests.get(d.url + "/readyz", timeout=5).json()["checks"]["redis"] == "down"
    finally:
        d.stop()


def test_migrate_is_idempotent(pg, redis_srv):
    args = [REDEEMCTL, f"--pg_conninfo={pg.conninfo}", "migrate", "--dir",
            os.path.join(ROOT, "scripts", "sql")]
    p1 = subprocess.run(args, capture_output=True, text=True, timeout=60)
    p2 = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert p1.returncode == 0 and p2.returncode == 0, p1.stderr + p2.stderr
    assert "(0 applied now)" in p2.stderr


def test_compose_file_is_valid():
    exe = shutil.which("docker-compose")
    if not exe:
        pytest.fail("docker-compose is not installed (scripts/test installs it)")
    p = subprocess.run([exe, "-f", os.path.join(ROOT, "docker-compose.yml"), "config", "-q"],
                       capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert p.returncode == 0, p.stderr


def test_idle_connections_are_closed(workdir, redis_srv, pg):
    import socket
    d = Daemon(workdir, redis_srv.port, pg.conninfo, "--idle_timeout_s=1").start()
    try:
        s = socket.create_connection(("127.0.0.1", d.port), timeout=5)
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert b"200" in s.recv(4096)
        s.settimeout(10)  # idle: the server closes the keep-alive connection after 1 s
        assert s.recv(4096) == b""
        s.close()
    finally:
        d.stop()


def test_uri_conninfo_reads_and_ships(workdir, fresh_db, pg):
    """A postgresql:// URI with options= works for every connection (keywords appended to
    it used to make it unparseable), and the connections name themselves."""
    db = dict(kv.split("=") for kv in fresh_db.split())["dbname"]
    uri = (f"postgresql://redeemd@127.0.0.1:{pg.port}/{db}"
           "?options=-c%20lock_timeout%3D2000")
    # a Redis of its own: another daemon's shipper must not take these entries
    redis = RedisServer(workdir).start()
    d = Daemon(workdir, redis.port, uri).start()
    try:
        api = Api(d.url, make_key(redis.port, "admin,redeem,fraud"))
        wait_for(lambda: key_loaded(api.base, api.key), what="key loaded")
        c = api.create()
        assert api.redeem(c["code"]).status_code == 201
        conn = psycopg2.connect(fresh_db)
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                def shipped():
                    cur.execute("SELECT count(*) FROM transactions WHERE code = %s AND "
                                "kind = 'redeem'", (c["code"],))
                    return cur.fetchone()[0] == 1
                wait_for(shipped, what="the redemption in the ledger")
                # a read through the workers' pool
                page = api.get(f"/v1/coupons?prefix={c['code']}").json()["data"]
                assert [x["code"] for x in page] == [c["code"]] and page[0]["used"] == 1
                cur.execute("SELECT application_name FROM pg_stat_activity WHERE datname = %s",
                            (db,))
                names = {r[0] for r in cur.fetchall()}
        finally:
            conn.close()
        assert {"redeemd-read", "redeemd-shipper"} <= names, names
    finally:
        d.stop()
        redis.stop()

