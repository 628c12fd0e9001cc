"""Redis Cluster: redeemd on 3 primaries with a replica each, min_replica_acks, a primary
killed under load (its replica takes over), slots resharded under load; a quarter of the
coupons are hot coupons split over the primaries ("shards": 3).

Each test runs its own cluster (cluster-node-timeout 2 s) and its own database, whatever
RD_TEST_REDIS_CLUSTER says. After each fault: every answer the clients saw accepted is one
use in Redis and one accepted ledger row, nothing over its limit, no row without an answer,
and `redeemctl reconcile` finds nothing to repair.
"""
import subprocess
import threading
import time

import psycopg2
import pytest
import redis as redis_lib
import requests

from conftest import (REDEEMCTL, Api, Daemon, RedisServer, key_loaded, make_key, redis_flags,
                      wait_for)

NOW = "2031-03-01T12:00:00Z"
LIMIT = 20   # uses per coupon: demand is far above it
COUPONS = 12  # spread over the three primaries


@pytest.fixture()
def cluster(workdir, fresh_db, request):
    m = request.node.get_closest_marker("daemon_args")
    redis = RedisServer(workdir, cluster=3).start()
    d = Daemon(workdir, redis.port, fresh_db, "--redis_timeout_ms=3000",
               *(m.args if m else ())).start()
    api = Api(d.url, make_key(redis.port, "admin,redeem,fraud"), now=NOW)
    wait_for(lambda: key_loaded(d.url, api.key, ok=(404,)), what="key loaded")
    yield redis, d, api, fresh_db
    d.stop(expect=None)
    redis.stop(kill=True)


def sql(db, q, *args):
    with psycopg2.connect(db) as c, c.cursor() as cur:
        cur.execute(q, args)
        return cur.fetchall()


def primaries(redis):
    """{port: [slot ranges]} of the primaries, as node 0 sees the cluster now."""
    out = {}
    for lo, hi, master, *_ in redis.node(redis.port).execute_command("CLUSTER SLOTS"):
        out.setdefault(int(master[1]), []).append((lo, hi))
    return out


def node_id(redis, port):
    return redis.node(port).execute_command("CLUSTER MYID")


def load(api, codes, stop, results, lock, prefix):
    """Redeems round the codes until stop; each attempt is retried with its own
    Idempotency-Key until it has a definite answer (also after stop)."""
    a = Api(api.base, api.key, now=NOW)
    i = 0
    while not stop.is_set():
        code = codes[i % len(codes)]
        user = f"{prefix}-{i}"
        deadline = time.monotonic() + 60
        r = None
        while time.monotonic() < deadline:
            try:
                r = a.redeem(code, user=user, key=f"k-{user}", now=NOW)
                if r.status_code != 503:
                    break
            except requests.RequestException:
                r = None
            time.sleep(0.05)  # a retry's pause, not a wait for state
        assert r is not None and r.status_code != 503, f"{user}: no definite answer in 60 s"
        with lock:
            results.append((code, user, r.status_code, r.json().get("id")))
        i += 1


def run_load(api, codes, fault, threads=6, before_s=1.0, after_s=None):
    stop, lock, results = threading.Event(), threading.Lock(), []
    ts = [threading.Thread(target=load, args=(api, codes, stop, results, lock, f"t{t}"),
                           daemon=True) for t in range(threads)]
    for t in ts:
        t.start()
    wait_for(lambda: len(results) > 50, timeout=30, what="load running")
    fault()
    n = len(results)
    # the load goes on until the cluster answers again for a while
    wait_for(lambda: len(results) > n + 200, timeout=60, what="load after the fault")
    stop.set()
    for t in ts:
        t.join(timeout=90)
    return results


def check_exact(redis, d, api, db, codes, results):
    accepted = {}
    for code, user, status, rid in results:
        assert status in (201, 409, 422), (code, user, status)
        if status == 201:
            accepted.setdefault(code, set()).add(rid)
    total = sum(len(v) for v in accepted.values())
    assert total > 0
    for code in codes:
        got = accepted.get(code, set())
        assert len(got) <= LIMIT, f"{code}: {len(got)} accepted, limit {LIMIT}"
        c = api.get(f"/v1/coupons/{code}").json()
        assert c["used"]["total"] == len(got), (code, c["used"], len(got))
    # the ledger: exactly the accepted answers, once each, once the outbox is shipped
    wait_for(lambda: requests.get(d.url + "/readyz", timeout=5).json()["ledger"]["backlog"]
             == 0, timeout=60, what="outbox shipped")
    want = {rid for ids in accepted.values() for rid in ids}

    def ledger():
        rows = sql(db, "SELECT txn_id FROM transactions WHERE kind = 'redeem' AND "
                       "outcome = 'accepted' AND code = ANY(%s)", list(codes))
        return [r[0] for r in rows]
    wait_for(lambda: set(ledger()) >= want, timeout=60, what="every accepted use in the ledger")
    rows = ledger()
    assert len(rows) == len(set(rows)), "a use shipped twice"
    assert set(rows) == want, (sorted(set(rows) - want)[:5], sorted(want - set(rows))[:5])
    p = subprocess.run([REDEEMCTL] + redis_flags(redis.port) +
                       [f"--pg_conninfo={db}", "reconcile", "--now", NOW],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    return total


def make_coupons(api, prefix):
    codes = []
    for i in range(COUPONS):
        body = dict(code=f"{prefix}-{i}", discount={"type": "percent", "value": 1000},
                    limits={"total": LIMIT, "per_user": 1})
        if i % 4 == 1:  # a hot coupon, split over the primaries (test_hot.py)
            body["shards"] = 3
        r = api.create_raw(**body)
        # min_replica_acks on a loaded machine: a replica slower than the timeout answers
        # 503 (outcome unknown); the coupon is there or not, as a retry tells
        for _ in range(20):
            if r.status_code != 503:
                break
            time.sleep(0.1)  # a retry's pause
            r = api.create_raw(**body)
        assert r.status_code == 201 or (r.status_code == 409 and api.get(
            f"/v1/coupons/{prefix}-{i}").status_code == 200), r.text
        codes.append(f"{prefix}-{i}")
    return codes


def test_slots_spread_and_every_route_works(cluster):
    """Coupons land on every primary; uses, replays, vouchers, reversals and the ledger work
    across them; redeemctl reconcile walks every primary."""
    redis, d, api, db = cluster
    codes = make_coupons(api, "SPREAD")
    per_node = {port: redis.node(port).dbsize() for port in primaries(redis)}
    assert len(per_node) == 3 and all(n > 0 for n in per_node.values()), per_node
    for i, code in enumerate(codes):
        r = api.redeem(code, user=f"u{i}", key=f"spread-{i}", now=NOW)
        assert r.status_code == 201, r.text
        again = api.redeem(code, user=f"u{i}", key=f"spread-{i}", now=NOW)
        assert again.json()["id"] == r.json()["id"]  # replayed, not used twice
    v = api.post("/v1/coupons", {"code": "SPREAD-V", "kind": "voucher", "balance": 5000,
                                 "currency": "EUR"})
    assert v.status_code == 201, v.text
    pay = api.post("/v1/vouchers/SPREAD-V/pay", {"amount": 1200, "currency": "EUR",
                                                 "user_id": "v"},
                   headers={"Idempotency-Key": "pay-1"})
    assert pay.status_code == 201 and pay.json()["balance"] == 3800, pay.text
    rid = api.redeem(codes[0], user="rev", key="rev-1", now=NOW).json()["id"]
    back = api.post(f"/v1/redemptions/{rid}/reverse", {}, headers={"Idempotency-Key": "b-1"})
    assert back.status_code in (200, 201), back.text
    wait_for(lambda: requests.get(d.url + "/readyz", timeout=5).json()["ledger"]["backlog"]
             == 0, timeout=60, what="outbox shipped")
    # creates, the voucher, one use per coupon, the payment, one more use, its reversal
    want = COUPONS + 1 + COUPONS + 1 + 1 + 1
    wait_for(lambda: sql(db, "SELECT count(*) FROM transactions WHERE code LIKE 'SPREAD-%%'")
             [0][0] == want, timeout=30, what="every row shipped")
    p = subprocess.run([REDEEMCTL] + redis_flags(redis.port) +
                       [f"--pg_conninfo={db}", "reconcile", "--now", NOW],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr


@pytest.mark.daemon_args("--min_replica_acks=1", "--replica_ack_timeout_ms=1000")
def test_primary_killed_under_load(cluster):
    """kill -9 of a primary under redemption load with min_replica_acks = 1: its replica
    takes over, redeemd follows the new map, and every answer is exact."""
    redis, d, api, db = cluster
    codes = make_coupons(api, "FAIL")
    victim = next(iter(primaries(redis)))

    alive = [p for p in redis.ports if p != victim]

    def kill():
        redis.kill_node(victim)
        # its replica takes over (cluster-node-timeout 2 s); writes to its slots answer 503
        # meanwhile, and after it until the old primary is back as the new one's replica:
        # min_replica_acks = 1 needs a replica to confirm
        wait_for(lambda: victim not in primaries_seen(redis, alive[0]), timeout=30,
                 what="the replica promoted")
        redis.wait_cluster_ok(alive)
        redis.start_node(victim)
        wait_for(lambda: redis.node(victim).info("replication")["role"] == "slave",
                 timeout=30, what="the old primary back as a replica")
        redis.wait_replicas()

    results = run_load(api, codes, kill)
    assert victim not in primaries_seen(redis, alive[0])
    total = check_exact(redis, d, api, db, codes, results)
    metrics = requests.get(d.url + "/metrics", timeout=5).text
    assert "redeemd_redis_replicated_writes_total" in metrics
    print(f"failover: {len(results)} attempts, {total} accepted")


def primaries_seen(redis, port):
    out = set()
    for lo, hi, master, *_ in redis.node(port).execute_command("CLUSTER SLOTS"):
        out.add(int(master[1]))
    return out


def test_resharding_under_load(cluster):
    """Slots move between primaries (redis-cli --cluster reshard) under load: redeemd follows
    ASK and MOVED, and every answer is exact."""
    redis, d, api, db = cluster
    codes = make_coupons(api, "MOVE")
    nodes = list(primaries(redis))
    src, dst = nodes[0], nodes[1]

    def reshard():
        subprocess.run(["redis-cli", "--cluster", "reshard", f"127.0.0.1:{redis.port}",
                        "--cluster-from", node_id(redis, src), "--cluster-to",
                        node_id(redis, dst), "--cluster-slots", "3000", "--cluster-yes"],
                       check=True, capture_output=True, timeout=300)

    results = run_load(api, codes, reshard)
    assert sum(hi - lo + 1 for lo, hi in primaries(redis)[dst]) > 5461
    check_exact(redis, d, api, db, codes, results)
    metrics = requests.get(d.url + "/metrics", timeout=5).text
    moved = [l for l in metrics.splitlines() if l.startswith("redeemd_redis_redirects_total ")]
    assert moved and int(moved[0].split()[1]) > 0, moved


@pytest.mark.daemon_args("--min_replica_acks=2", "--replica_ack_timeout_ms=200")
def test_too_few_replicas_is_unknown_outcome(cluster):
    """min_replica_acks above the replicas there are: a use answers 503 with the outcome
    unknown, and a retry with the same Idempotency-Key too; the metric counts them."""
    redis, d, api, db = cluster
    code = "ACKS-1"
    r = api.create_raw(code=code, limits={"total": LIMIT})
    assert r.status_code == 503, r.text  # a coupon write waits for replicas too
    assert api.get(f"/v1/coupons/{code}").status_code == 200  # on its primary all the same
    for _ in range(2):
        r = api.redeem(code, user="a", key="acks-1", now=NOW)
        assert r.status_code == 503, r.text
        assert "replicas" in r.json()["error"]["message"]
    metrics = requests.get(d.url + "/metrics", timeout=5).text
    line = [l for l in metrics.splitlines()
            if l.startswith("redeemd_redis_unreplicated_writes_total ")]
    assert int(line[0].split()[1]) >= 3
    # and the ledger does not take what no replica has
    assert "shipper_batch_unreplicated" in d.log() or wait_for(
        lambda: "shipper_batch_unreplicated" in d.log(), what="the shipper holding back")
    assert sql(db, "SELECT count(*) FROM transactions WHERE code = %s", code)[0][0] == 0


@pytest.mark.daemon_args("--min_replica_acks=1", "--replica_ack_timeout_ms=300")
def test_nothing_ships_before_a_replica_has_it_also_after_a_restart(cluster):
    """A replica that stops acknowledging (DEBUG SLEEP): uses answer 503, outcome unknown,
    and the ledger takes none of their outbox entries, also from a restarted shipper that
    reads them again from its pending list. Once the replica is back the entries ship, once,
    and a retry with the same key gets the one true answer: the use made before."""
    redis, d, api, db = cluster
    code = make_coupons(api, "LAG")[0]
    owner = next(p for p in primaries(redis) if list(redis.node(p).scan_iter(
        match=f"*:c:{code}")))
    replica = int(redis.node(owner).info("replication")["slave0"]["port"])
    wait_for(lambda: requests.get(d.url + "/readyz", timeout=5).json()["ledger"]["backlog"]
             == 0, timeout=30, what="the coupons shipped")
    slow = redis_lib.Redis(host="127.0.0.1", port=replica, socket_timeout=30)
    sleeper = threading.Thread(target=lambda: slow.execute_command("DEBUG", "SLEEP", "6"),
                               daemon=True)
    sleeper.start()
    time.sleep(0.2)  # the DEBUG SLEEP has to start first (it blocks the replica's loop)
    r = api.redeem(code, user="lag", key="lag-1", now=NOW)
    assert r.status_code == 503 and "replicas" in r.json()["error"]["message"], r.text
    d.stop()
    d.start()

    def restarted_log():
        with open(d.logs[-1], errors="replace") as f:
            return f.read()
    # the restarted shipper reads its pending list again: the entry must be held back there
    wait_for(lambda: "shipper_pending_drained" in restarted_log() or
             "shipper_batch_unreplicated" in restarted_log(), timeout=10,
             what="the restarted shipper's first reads")
    wait_for(lambda: "shipper_batch_unreplicated" in restarted_log(), timeout=10,
             what="the restarted shipper holding the entry back")
    assert sql(db, "SELECT count(*) FROM transactions WHERE code = %s AND kind = 'redeem'",
               code)[0][0] == 0
    sleeper.join(timeout=20)
    wait_for(lambda: sql(db, "SELECT count(*) FROM transactions WHERE code = %s AND "
                             "kind = 'redeem'", code)[0][0] == 1, timeout=30,
             what="the entry shipped once the replica has it")
    again = api.redeem(code, user="lag", key="lag-1", now=NOW)
    assert again.status_code == 201, again.text
    rid = sql(db, "SELECT txn_id FROM transactions WHERE code = %s AND kind = 'redeem'",
              code)[0][0]
    assert again.json()["id"] == rid
