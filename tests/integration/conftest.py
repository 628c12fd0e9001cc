"""Integration fixtures: real redis-server, PostgreSQL and redeemd on free loopback ports.

Everything runs black box: tests talk HTTP to the daemon and read Redis only to check
invariants. Servers live in a temporary directory removed at the end; their logs are
printed when a test fails. With RD_SANITIZED=1 (the ASan+UBSan pass of scripts/test) every
daemon's stderr is checked for sanitizer reports when it stops. With RD_TEST_REDIS_CLUSTER=N
every Redis is a Redis Cluster of N primaries and N replicas instead (redeemd and redeemctl
get its nodes as redis_cluster; tests marked single_redis, which stop, restart or reconfigure
"the" Redis, are skipped).
"""
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid

import psycopg2
import pytest
import redis as redis_lib
import requests

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.path.abspath(os.environ.get("RD_BUILD_DIR", os.path.join(ROOT, "build")))
REDEEMD = os.path.join(BUILD, "redeemd")
REDEEMCTL = os.path.join(BUILD, "redeemctl")
REDEEM_BENCH = os.path.join(BUILD, "redeem-bench")
PGBIN = "/usr/lib/postgresql/15/bin"
SANITIZED = os.environ.get("RD_SANITIZED") == "1"
# RD_TEST_CLOCK="+5y" runs every redeemd under faketime, its wall clock that far ahead (the
# monotonic clock, and Redis and PostgreSQL, untouched): no test may pass only today.
CLOCK = os.environ.get("RD_TEST_CLOCK", "")
FAKETIME_LIB = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1"  # Debian's libfaketime
SANITIZER_MARKS = ("AddressSanitizer", "LeakSanitizer", "runtime error:", "UndefinedBehavior")
CLUSTER = int(os.environ.get("RD_TEST_REDIS_CLUSTER", "0") or 0)
SEEDS = {}  # a cluster's first port -> "127.0.0.1:p,127.0.0.1:q,..." (redis_cluster)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _bindable(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def cluster_ports(n):
    """n distinct free ports whose cluster bus ports (+10000) are free and valid too. Both
    stay below the kernel's ephemeral range (32768 up), which outgoing connections draw
    from, and each pytest-xdist process draws from its own slice, so two processes never
    pick the same."""
    import random
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    count = max(int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1), 1)
    i = int(worker[2:]) if worker[2:].isdigit() else 0
    span = 2700 // count
    lo = 20000 + (i % count) * span
    ports = []
    while len(ports) < n:
        p = random.randrange(lo, lo + span)
        if p not in ports and _bindable(p) and _bindable(p + 10000):
            ports.append(p)
    return ports


class NodeExited(Exception):
    """A redis-server ended before it answered (its port was taken meanwhile)."""


def redis_flags(port):
    """redeemd's and redeemctl's flags for the Redis (or cluster) whose first port is port."""
    return [f"--redis_port={port}"] + ([f"--redis_cluster={SEEDS[port]}"] if port in SEEDS
                                       else [])


# What a predicate may raise while the thing it waits for is still coming up (a server not
# listening yet, Redis loading, PostgreSQL restarting). An AssertionError is never one of
# them: an assert inside a predicate fails the test at once.
TRANSIENT = (OSError, ValueError, KeyError, requests.RequestException,
             redis_lib.exceptions.ConnectionError, redis_lib.exceptions.BusyLoadingError,
             redis_lib.exceptions.TimeoutError, psycopg2.OperationalError)


def wait_for(pred, timeout=10.0, step=0.05, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if pred():
                return True
        except TRANSIENT:
            pass
        time.sleep(step)
    raise AssertionError(f"timed out waiting for {what}")


class RedisServer:
    """A redis-server with the production durability settings (AOF always, noeviction); with
    cluster=N (default: RD_TEST_REDIS_CLUSTER), a Redis Cluster of N primaries and N replicas,
    port being its first node's."""

    def __init__(self, base, cluster=None):
        self.dir = tempfile.mkdtemp(prefix="redis-", dir=base)
        self.cluster = CLUSTER if cluster is None else cluster  # primaries; 0: one Redis
        self.ports = (cluster_ports(2 * self.cluster) if self.cluster
                      else [free_port()])
        self.port = self.ports[0]
        self.procs = {}  # port -> Popen
        self.started = False  # once: later starts are restarts, on the same ports

    @property
    def proc(self):
        return self.procs.get(self.port)

    def node_dir(self, port):
        return os.path.join(self.dir, str(port)) if self.cluster else self.dir

    def start_node(self, port, *extra):
        assert port not in self.procs or self.procs[port].poll() is not None, \
            f"redis-server on {port} is running already"
        d = self.node_dir(port)
        os.makedirs(d, exist_ok=True)
        # shutdown-timeout 0: a primary stopping with its replica does not wait 10 s for it
        # repl-diskless-sync-delay 0: a replica's first sync starts at once, not after the
        # 5 s Redis waits for more replicas to share it
        cluster = (["--cluster-enabled", "yes", "--cluster-node-timeout", "2000",
                    "--cluster-config-file", "nodes.conf", "--shutdown-timeout", "0",
                    "--repl-diskless-sync-delay", "0", "--enable-debug-command", "local"]
                   if self.cluster else [])
        self.procs[port] = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
             "--dir", d, "--appendonly", "yes", "--appendfsync", "always",
             "--maxmemory-policy", "noeviction", "--save", "",
             "--logfile", os.path.join(d, "redis.log")] + cluster + list(extra))

    def answers(self, port):
        p = self.procs.get(port)
        if p is not None and p.poll() is not None:
            raise NodeExited(f"redis-server on {port} exited: {self.log(port)[-800:]}")
        return self.node(port).ping()

    def start(self, *extra, wait=True):
        """Starts the server (extra: further redis-server flags); with wait, until it answers
        PING (after loading its AOF). A cluster is formed on first start and waited for.
        A port checked free can be taken before redis-server binds it (by another process):
        on the first start the ports are then drawn again."""
        first, self.started = not self.started, True
        for attempt in range(3):
            for port in self.ports:
                self.start_node(port, *extra)
            try:
                if self.cluster or wait:
                    for port in self.ports:
                        wait_for(lambda: self.answers(port), timeout=30,
                                 what=f"redis on {port}")
                break
            except NodeExited:
                if not first or attempt == 2:
                    raise
                self.stop(kill=True)
                shutil.rmtree(self.dir, ignore_errors=True)
                os.makedirs(self.dir)
                self.ports = (cluster_ports(2 * self.cluster)
                              if self.cluster else [free_port()])
                self.port = self.ports[0]
        if self.cluster:
            if int(self.node(self.port).cluster("info")["cluster_known_nodes"]) == 1:
                subprocess.run(["redis-cli", "--cluster", "create"] +
                               [f"127.0.0.1:{p}" for p in self.ports] +
                               ["--cluster-replicas", "1", "--cluster-yes"], check=True,
                               capture_output=True, timeout=60)
            self.wait_cluster_ok()
            self.wait_replicas()
            SEEDS[self.port] = ",".join(f"127.0.0.1:{p}" for p in self.ports)
        return self

    def wait_cluster_ok(self, ports=None, timeout=30):
        for port in ports or self.ports:
            wait_for(lambda: self.node(port).cluster("info")["cluster_state"] == "ok",
                     timeout=timeout, what=f"cluster state ok on {port}")

    def wait_replicas(self, timeout=30):
        """Until every primary has an online replica (a replica still syncing cannot
        confirm a WAIT)."""
        def synced(port):
            info = self.node(port).info("replication")
            if info.get("role") != "master":
                return True
            return any(isinstance(v, dict) and v.get("state") == "online"
                       for k, v in info.items() if k.startswith("slave"))
        for port in self.ports:
            wait_for(lambda: synced(port), timeout=timeout, what=f"a replica of {port} online")

    def node(self, port):
        return redis_lib.Redis(host="127.0.0.1", port=port, decode_responses=True,
                               socket_timeout=5)

    def client(self, decode=True):
        if self.cluster:
            return redis_lib.RedisCluster(host="127.0.0.1", port=self.port,
                                          decode_responses=decode, socket_timeout=5)
        return redis_lib.Redis(host="127.0.0.1", port=self.port, decode_responses=decode,
                               socket_timeout=5)

    def key_count(self):
        """Keys in Redis: DBSIZE, summed over the primaries of a cluster."""
        return sum(self.node(p).dbsize() for p in self.ports
                   if self.node(p).info("replication")["role"] == "master")

    def kill_node(self, port):
        p = self.procs.pop(port)
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=20)

    def stop(self, kill=False):
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        for p in self.procs.values():
            p.wait(timeout=20)
        self.procs = {}

    def log(self, port=None):
        try:
            with open(os.path.join(self.node_dir(port or self.port), "redis.log")) as f:
                return f.read()[-4000:]
        except OSError:
            return ""


class Postgres:
    def __init__(self, base):
        self.dir = tempfile.mkdtemp(prefix="pg-", dir=base)
        self.port = free_port()
        pw = pwd.getpwnam("postgres") if os.getuid() == 0 else None
        if pw:
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        self.as_pg = ["runuser", "-u", "postgres", "--"] if pw else []
        subprocess.run(self.as_pg + [f"{PGBIN}/initdb", "-D", self.dir, "-A", "trust",
                                     "-U", "postgres", "--no-sync"],
                       check=True, stdout=subprocess.DEVNULL)
        with open(os.path.join(self.dir, "postgresql.conf"), "a") as f:
            f.write("fsync = off\nlisten_addresses = '127.0.0.1'\n")
        self.start()
        self.psql("CREATE ROLE redeemd LOGIN CREATEROLE")
        self.psql("CREATE DATABASE redeemd OWNER redeemd")

    def start(self):
        subprocess.run(self.as_pg + [f"{PGBIN}/pg_ctl", "-D", self.dir, "-w", "-l",
                                     os.path.join(self.dir, "server.log"), "-o",
                                     f"-p {self.port} -k {self.dir}", "start"],
                       check=True, stdout=subprocess.DEVNULL)

    def stop(self):
        subprocess.run(self.as_pg + [f"{PGBIN}/pg_ctl", "-D", self.dir, "-m", "fast", "-w",
                                     "stop"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def psql(self, sql, db="postgres"):
        subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                        "-d", db, "-qc", sql], check=True, stdout=subprocess.DEVNULL)

    @property
    def conninfo(self):
        return f"host=127.0.0.1 port={self.port} dbname=redeemd user=redeemd"


class Contract:
    """docs/openapi.json as a check: every answer an Api gets is looked up by method, path
    template and status, and a JSON body must validate against the documented schema. An
    answer with a status the operation does not document falls to its `default` (the Error
    envelope), so an undocumented success fails too. Paths the document does not have (tests
    of unknown routes) are not checked here: test_openapi.py checks the route list."""

    def __init__(self, path):
        from jsonschema import Draft202012Validator, RefResolver
        with open(path) as f:
            self.doc = json.load(f)
        self.resolver = RefResolver("", self.doc)
        self.validator = Draft202012Validator
        self.routes = []
        for tmpl, item in self.doc["paths"].items():
            rx = re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(tmpl)) + "$")
            for m in item:
                if m in ("get", "post", "patch", "delete", "put"):
                    self.routes.append((m, rx, tmpl))
        self.checked = 0

    def deref(self, node):
        while "$ref" in node:
            node = self.resolver.resolve(node["$ref"])[1]
        return node

    def check(self, method, url, r):
        path = requests.utils.urlparse(url).path
        found = [t for m, rx, t in self.routes if m == method.lower() and rx.match(path)]
        if not found:
            return
        tmpl = min(found, key=lambda t: t.count("{"))
        op = self.doc["paths"][tmpl][method.lower()]
        resp = op["responses"].get(str(r.status_code)) or op["responses"].get("default")
        assert resp is not None, f"{method} {tmpl}: {r.status_code} is not documented"
        resp = self.deref(resp)
        if "content" not in resp or not r.content:
            return
        media = r.headers.get("Content-Type", "").split(";")[0].strip()
        content = resp["content"].get(media)
        assert content is not None, f"{method} {tmpl} {r.status_code}: {media} not documented"
        if media == "application/json":
            errors = sorted(self.validator(content["schema"], resolver=self.resolver)
                            .iter_errors(r.json()), key=lambda e: list(e.absolute_path))
            assert not errors, (f"{method} {path} {r.status_code} does not match "
                                f"docs/openapi.json: {errors[0].message[:300]} at "
                                f"{list(errors[0].absolute_path)}")
        self.checked += 1


try:
    CONTRACT = Contract(os.path.join(ROOT, "docs", "openapi.json"))
except ImportError:  # python3-jsonschema missing: scripts/test installs it
    CONTRACT = None


class Api:
    """A thin HTTP client bound to one key; each instance has its own connection pool. With
    now set (RFC 3339), every request carries it as X-Redeemd-Now: the daemon's clock for
    that request (--test_clock), so that dates in a test mean the same on any day."""

    def __init__(self, base_url, key=None, now=None):
        self.base = base_url
        self.key = key
        self.now = now
        self.s = requests.Session()

    def headers(self, extra=None, key=None):
        h = {"Content-Type": "application/json"}
        k = key if key is not None else self.key
        if k:
            h["Authorization"] = f"Bearer {k}"
        if self.now:
            h["X-Redeemd-Now"] = self.now
        if extra:
            h.update(extra)
        return h

    def req(self, method, path, json_body=None, data=None, headers=None, key=None):
        kw = {"headers": self.headers(headers, key), "timeout": 20}
        if json_body is not None:
            kw["json"] = json_body
        if data is not None:
            kw["data"] = data
        r = self.s.request(method, self.base + path, **kw)
        if CONTRACT and not kw["headers"].get("Accept", "").startswith("text/csv"):
            CONTRACT.check(method, self.base + path, r)
        return r

    def post(self, path, body=None, **kw):
        return self.req("POST", path, body, **kw)

    def get(self, path, **kw):
        return self.req("GET", path, **kw)

    def patch(self, path, body=None, **kw):
        return self.req("PATCH", path, body, **kw)

    # domain helpers
    def create_raw(self, **fields):
        body = {"code": unique_code(), "discount": {"type": "percent", "value": 1000},
                "currency": "EUR"}
        body.update(fields)
        return self.post("/v1/coupons", body)

    def create(self, **fields):
        r = self.create_raw(**fields)
        assert r.status_code == 201, r.text
        return r.json()

    def redeem(self, code, user="alice", amount=10000, key=None, now=None, currency="EUR",
               **extra):
        headers = {"Idempotency-Key": key or uuid.uuid4().hex}
        if now:
            headers["X-Redeemd-Now"] = now
        body = {"code": code, "user_id": user, "order_amount": amount, "currency": currency}
        body.update(extra)
        return self.post("/v1/redemptions", body, headers=headers)

    def validate(self, code, user="alice", amount=10000, now=None, currency="EUR"):
        headers = {"X-Redeemd-Now": now} if now else None
        return self.post("/v1/validate", {"code": code, "user_id": user,
                                          "order_amount": amount, "currency": currency},
                         headers=headers)


def load(d, key, code, stop, results, lock, prefix):
    """Redeems until stop is set. Each request is retried with its key until it has an
    answer (also after stop), so the outcome of every attempt is known."""
    a = Api(d.url, key)
    i = 0
    while not stop.is_set():
        user = f"{prefix}-{i}"
        deadline = time.monotonic() + 60
        r = None  # this user's answer, never the one before
        while time.monotonic() < deadline:
            try:
                r = a.redeem(code, user=user, key=f"k-{user}")
                if r.status_code != 503:
                    break
            except requests.RequestException:
                r = None
                a = Api(d.url, key)
            time.sleep(0.05)  # a retry's pause, not a wait for state
        assert r is not None, f"{user}: no answer in 60 s"
        with lock:
            results.append((user, r.status_code, r.json().get("id")))
        i += 1


def start_load(d, key, code, n, prefix):
    """n daemon threads running load(); returns (stop, results, threads)."""
    stop, lock, results = threading.Event(), threading.Lock(), []
    threads = [threading.Thread(target=load, args=(d, key, code, stop, results, lock,
                                                   f"{prefix}{t}"), daemon=True)
               for t in range(n)]
    for t in threads:
        t.start()
    return stop, results, lock, threads


def metric(text, name):
    """The value of an unlabelled metric in a /metrics text, or None."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def outbox_len(r, buckets=1024):
    """The real backlog: entries in every bucket's outbox stream, read from Redis itself."""
    p = r.pipeline(transaction=False)
    for b in range(buckets):
        p.xlen(f"{{{b:04d}}}:log")
    return sum(p.execute())


def unique_code(prefix="T"):
    return f"{prefix}-{uuid.uuid4().hex[:12].upper()}"


class Daemon:
    def __init__(self, base, redis_port, pg_conninfo, *extra):
        self.dir = tempfile.mkdtemp(prefix="redeemd-", dir=base)
        self.redis_port = redis_port
        self.pg_conninfo = pg_conninfo
        self.extra = list(extra)
        self.port = None
        self.proc = None
        self.logs = []

    def args(self):
        return redis_flags(self.redis_port) + [f"--pg_conninfo={self.pg_conninfo}",
                "--listen_addr=127.0.0.1", f"--port={self.port or 0}", "--workers=2",
                "--test_clock", "--key_refresh_ms=200", "--pg_probe_interval_ms=200",
                "--redis_timeout_ms=1000",
                # guessing budgets off: tests probe unknown codes by the hundred on a frozen
                # clock (test_guess.py turns them on with its own settings)
                "--guess_ip_per_min=0", "--guess_user_per_min=0",
                "--guess_session_per_min=0", "--guess_key_per_min=0",
                f"--port_file={os.path.join(self.dir, 'port')}"] + self.extra

    def start(self, wait_ready=True):
        pf = os.path.join(self.dir, "port")
        if os.path.exists(pf):
            os.unlink(pf)
        log = os.path.join(self.dir, f"redeemd-{len(self.logs)}.log")
        self.logs.append(log)
        env = None
        if CLOCK:  # preloaded into redeemd itself (the faketime wrapper would be its parent,
            # and a signal meant for redeemd would stop the wrapper instead)
            env = dict(os.environ, LD_PRELOAD=FAKETIME_LIB, FAKETIME=CLOCK,
                       FAKETIME_DONT_FAKE_MONOTONIC="1")
        self.proc = subprocess.Popen([REDEEMD] + self.args(), stdout=open(log, "w"),
                                     stderr=subprocess.STDOUT, env=env)
        wait_for(lambda: os.path.exists(pf), what="redeemd port file")
        with open(pf) as f:
            self.port = int(f.read())
        if wait_ready:
            wait_for(lambda: requests.get(self.url + "/readyz", timeout=2).status_code == 200,
                     timeout=20, what="redeemd /readyz")
        return self

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def stop(self, sig=signal.SIGTERM, expect=0):
        if not self.proc:
            return
        self.proc.send_signal(sig)
        rc = self.proc.wait(timeout=30)
        self.proc = None
        self.check_sanitizers()
        if expect is not None:
            assert rc == expect, f"redeemd exited with {rc}\n{self.log()}"

    def check_sanitizers(self):
        text = self.log(full=True)
        for mark in SANITIZER_MARKS:
            assert mark not in text, f"sanitizer report in redeemd output:\n{text[-6000:]}"

    def log(self, full=False):
        out = []
        for p in self.logs:
            with open(p, errors="replace") as f:
                out.append(f.read())
        text = "\n".join(out)
        return text if full else text[-6000:]


def ctl(redis_port, *args, check=True):
    p = subprocess.run([REDEEMCTL] + redis_flags(redis_port) + list(args),
                       capture_output=True, text=True, timeout=30)
    if check:
        assert p.returncode == 0, p.stderr
    return p


def key_loaded(url, key, path="/v1/coupons/NONE", ok=(404,)):
    """Whether every worker knows key. Workers load keys on their own timer and a connection
    lands on any of them, so one answer proves one worker: 16 fresh connections in a row
    must all be answered (a worker still without the key is missed by all of them once in
    65,536 tries)."""
    for _ in range(16):
        r = requests.get(url + path, timeout=5, headers={"Authorization": f"Bearer {key}",
                                                        "Connection": "close"})
        if r.status_code not in ok:
            return False
        # a 503 may be allowed (a dependency meant to be down), but not the one that says
        # the worker has no keys yet: the key is then not known, whatever the test expects
        if r.status_code == 503 and "keys are not loaded" in r.text:
            return False
    return True


def make_key(redis_port, scope, name="test"):
    return ctl(redis_port, "keys", "create", "--scope", scope, "--name", name).stdout.strip()


@pytest.fixture(scope="session")
def workdir():
    base = tempfile.mkdtemp(prefix="rdtest-")
    os.chmod(base, 0o755)  # the postgres user must reach its data directory
    yield base
    shutil.rmtree(base, ignore_errors=True)


def migrate(conninfo):
    p = subprocess.run([REDEEMCTL, f"--pg_conninfo={conninfo}", "migrate", "--dir",
                        os.path.join(ROOT, "scripts", "sql")], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0, p.stderr


_dbs = [0]


@pytest.fixture()
def fresh_db(pg):
    """A new, migrated database of its own: for tests that read the whole ledger."""
    _dbs[0] += 1
    name = f"redeemd_t{_dbs[0]}"
    pg.psql(f"CREATE DATABASE {name} OWNER redeemd")
    conninfo = f"host=127.0.0.1 port={pg.port} dbname={name} user=redeemd"
    migrate(conninfo)
    return conninfo


@pytest.fixture()
def stack(workdir, fresh_db, request):
    """An isolated set: its own Redis, its own migrated database, a daemon and an API client
    with every scope. Extra daemon flags come from @pytest.mark.daemon_args(...); with
    no_wait=True the daemon is not required to be ready (a dependency is meant to be down).
    Yields (redis, daemon, api, conninfo)."""
    m = request.node.get_closest_marker("daemon_args")
    redis = RedisServer(workdir).start()
    d = Daemon(workdir, redis.port, fresh_db, *(m.args if m else ())).start(
        wait_ready=not (m and m.kwargs.get("no_wait")))
    api = Api(d.url, make_key(redis.port, "admin,redeem,fraud"))
    wait_for(lambda: key_loaded(d.url, api.key, ok=(404, 503)), what="key loaded")
    yield redis, d, api, fresh_db
    d.stop(expect=None)
    redis.stop()


@pytest.fixture(scope="session")
def pg(workdir):
    p = Postgres(workdir)
    migrate(p.conninfo)
    yield p
    p.stop()


@pytest.fixture(scope="session")
def redis_srv(workdir):
    r = RedisServer(workdir).start()
    yield r
    r.stop()


@pytest.fixture(scope="session")
def daemon(workdir, redis_srv, pg):
    d = Daemon(workdir, redis_srv.port, pg.conninfo).start()
    yield d
    d.stop()


@pytest.fixture(scope="session")
def keys(redis_srv, daemon):
    k = {s: make_key(redis_srv.port, s, f"test {s}") for s in ("admin", "redeem", "fraud")}
    k["all"] = make_key(redis_srv.port, "admin,redeem,fraud", "test all")
    # workers load keys every key_refresh_ms
    # (a known key without the scope for the route gets 403, an unknown one 401)
    wait_for(lambda: all(key_loaded(daemon.url, k[s], ok=(403, 404)) for s in k),
             what="keys loaded")
    return k


@pytest.fixture()
def api(daemon, keys):
    return Api(daemon.url, keys["all"])


@pytest.fixture()
def rds(redis_srv):
    return redis_srv.client()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call" and rep.failed:
        d = item.funcargs.get("daemon")
        stack = item.funcargs.get("stack") or item.funcargs.get("cluster")
        if stack is not None:
            d = stack[1]
        if d is not None:
            rep.sections.append(("redeemd log", d.log()))


def pytest_configure(config):
    config.addinivalue_line("markers", "daemon_args(*flags, no_wait=False): extra redeemd flags")
    config.addinivalue_line("markers", "single_redis: stops, restarts or reconfigures the one "
                                       "Redis; skipped on a cluster")


def pytest_collection_modifyitems(config, items):
    if CLUSTER:
        skip = pytest.mark.skip(reason="needs the one Redis (RD_TEST_REDIS_CLUSTER is set)")
        for item in items:
            if "single_redis" in item.keywords:
                item.add_marker(skip)
