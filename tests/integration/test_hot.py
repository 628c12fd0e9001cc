"""Hot coupons: a coupon created with "shards": K keeps its total as K sub-budgets on K
buckets (on different primaries of a cluster); a user's counts live on the user's shard; an
exhausted shard borrows from the others by moves that can only lose budget, never make it.

Every test runs its own Redis (a cluster on the cluster pass of ./scripts/test) and its own
database, and checks the end state: uses equal to the limit exactly under over-demand, the
shards' budgets and uses adding up to the total, and the ledger equal to the answers.
"""
import subprocess
import threading

import psycopg2
import pytest
import requests

from conftest import REDEEMCTL, Api, redis_flags, wait_for
from test_concurrency import burst

NOW = "2031-03-01T12:00:00Z"
LATER = "2031-03-01T14:00:00Z"  # moves taken at NOW are long settled by then


def fnv(s, h=2166136261):
    for b in s.encode():
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return h


def shard_of(user, n):
    """rd_shard_of_user: FNV-1a salted, modulo the shard count."""
    return fnv(user, 2166136261 ^ 0x5BD1E995) % n


def users_of(shard, n, count, prefix="u"):
    out, i = [], 0
    while len(out) < count:
        u = f"{prefix}{i}"
        if shard_of(u, n) == shard:
            out.append(u)
        i += 1
    return out


def sql(db, q, *args):
    with psycopg2.connect(db) as c, c.cursor() as cur:
        cur.execute(q, args)
        return cur.fetchall()


def layout(rds, code):
    buckets = int(rds.hget("rd:meta", "buckets"))
    home = f"{{{fnv(code) % buckets:04d}}}:c:{code}"
    return [int(b) for b in rds.hget(home, "shards").split(",")]


def shard_key(b, code):
    return f"{{{b:04d}}}:s:{code}"


def shards_state(rds, code):
    """[(budget, used)] per shard, straight from Redis."""
    return [(int(rds.hget(shard_key(b, code), "budget") or 0),
             int(rds.hget(shard_key(b, code), "used") or 0)) for b in layout(rds, code)]


def reconcile(redis, db, *args, now=LATER):
    p = subprocess.run([REDEEMCTL] + redis_flags(redis.port) +
                       [f"--pg_conninfo={db}", "reconcile", "--now", now] + list(args),
                       capture_output=True, text=True, timeout=120)
    return p.returncode, p.stdout + p.stderr


def in_ledger(db, code, n):
    """Until the ledger holds n accepted uses of code (a backlog read just after the last
    answer may not count that answer's entry yet)."""
    wait_for(lambda: sql(db, "SELECT count(*) FROM transactions WHERE code = %s AND "
                             "kind = 'redeem' AND outcome = 'accepted'", code)[0][0] == n,
             timeout=60, what=f"{n} uses of {code} in the ledger")


@pytest.fixture()
def hot(stack):
    redis, d, api, db = stack
    api.now = NOW
    return redis, d, api, db, redis.client()


def create(api, code, total, shards=3, **extra):
    r = api.post("/v1/coupons", dict(code=code, discount={"type": "percent", "value": 1000},
                                     limits=dict(total=total, **extra.pop("limits", {})),
                                     shards=shards, **extra))
    assert r.status_code == 201, r.text
    return r.json()


def test_create_spreads_the_total(hot):
    redis, d, api, db, rds = hot
    c = create(api, "HOT-SPREAD", 100)
    assert c["shards"]["count"] == 3
    assert c["shards"]["budget"] == [34, 33, 33] and c["used"]["total"] == 0, c
    assert sorted(b for b, _ in shards_state(rds, "HOT-SPREAD")) == [33, 33, 34]
    buckets = layout(rds, "HOT-SPREAD")
    assert len(set(buckets)) == 3
    if redis.cluster:  # one shard per primary
        slots = {rds.keyslot(shard_key(b, "HOT-SPREAD")) for b in buckets}
        owners = {rds.nodes_manager.get_node_from_slot(s).port for s in slots}
        assert len(owners) == 3, owners
    g = api.get("/v1/coupons/HOT-SPREAD").json()
    assert g["shards"] == c["shards"] and g["remaining"]["total"] == 100


def test_bad_shard_requests(hot):
    redis, d, api, db, rds = hot
    bad = [dict(shards=0, limits={"total": 5}), dict(shards=17, limits={"total": 5}),
           dict(shards="3", limits={"total": 5}), dict(shards=3),
           dict(shards=3, kind="voucher", balance=100)]
    for i, body in enumerate(bad):
        b = dict(code=f"HOT-BAD-{i}", currency="EUR", **body)
        if body.get("kind") != "voucher":
            b["discount"] = {"type": "percent", "value": 1000}
        r = api.post("/v1/coupons", b)
        assert r.status_code == 400, (body, r.text)
        field = r.json()["error"]["details"]["field"]
        assert field in ("shards", "limits.total"), (body, r.text)
    create(api, "HOT-PATCH", 10)
    r = api.patch("/v1/coupons/HOT-PATCH", {"shards": 2})
    assert r.status_code == 400 and r.json()["error"]["details"]["field"] == "shards"
    r = api.patch("/v1/coupons/HOT-PATCH", {"limits": {"total": None}})
    assert r.status_code == 400 and r.json()["error"]["details"]["field"] == "limits.total"
    r = api.post("/v1/batches", {"count": 5,
                                 "template": {"discount": {"type": "percent", "value": 100},
                                              "limits": {"total": 5}, "shards": 2}})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["details"]["field"] == "template.shards"


def test_limit_exact_under_over_demand(hot):
    """Three times the demand, all at once: exactly the total is accepted, every shard ends
    at zero budget, and the ledger holds exactly the accepted answers."""
    redis, d, api, db, rds = hot
    create(api, "HOT-EXACT", 90)
    rs = burst(d, api.key, 270, lambda a, i: a.redeem("HOT-EXACT", user=f"x{i}",
                                                      key=f"x{i}", now=NOW))
    ok = [r for r in rs if r.status_code == 201]
    assert len(ok) == 90, sorted(r.status_code for r in rs)
    assert all(r.json()["error"]["code"] == "limit_total_reached" for r in rs
               if r.status_code != 201)
    assert len({r.json()["id"] for r in ok}) == 90
    state = shards_state(rds, "HOT-EXACT")
    assert sum(u for _, u in state) == 90 and all(b == 0 for b, _ in state), state
    g = api.get("/v1/coupons/HOT-EXACT").json()
    assert g["status"] == "exhausted" and g["used"]["total"] == 90, g
    # users of every shard were served (borrowing moved budget where demand was)
    assert all(u > 0 for _, u in state), state
    in_ledger(db, "HOT-EXACT", 90)
    want = {r.json()["id"] for r in ok}
    rows = {r[0] for r in sql(db, "SELECT txn_id FROM transactions WHERE code = 'HOT-EXACT' "
                                  "AND kind = 'redeem' AND outcome = 'accepted'")}
    assert rows == want
    rc, out = reconcile(redis, db)
    assert rc == 0, out


def test_per_user_limits_exact_on_the_users_shard(hot):
    redis, d, api, db, rds = hot
    create(api, "HOT-USER", 1000, limits={"per_user": 2})
    rs = burst(d, api.key, 120, lambda a, i: a.redeem("HOT-USER", user=f"p{i % 6}", now=NOW))
    for u in range(6):
        got = [r for i, r in enumerate(rs) if i % 6 == u and r.status_code == 201]
        assert len(got) == 2, u
    assert sorted({r.json()["error"]["code"] for r in rs if r.status_code != 201}) == \
        ["limit_user_reached"]
    # each user's counts are on their own shard only
    buckets = layout(rds, "HOT-USER")
    for u in range(6):
        holders = [b for b in buckets
                   if rds.hget(f"{{{b:04d}}}:u:HOT-USER", f"u:p{u}") is not None]
        assert holders == [buckets[shard_of(f"p{u}", 3)]], (u, holders)


def test_one_shard_borrows_all_of_the_total(hot):
    """Every request lands on one shard: it borrows from the others until the whole total
    is used, one request at a time, and never refuses while any shard still has budget."""
    redis, d, api, db, rds = hot
    create(api, "HOT-ONE", 40)
    users = users_of(1, 3, 45)
    codes = [api.redeem("HOT-ONE", user=u, key=u).status_code for u in users]
    assert codes == [201] * 40 + [422] * 5, codes
    state = shards_state(rds, "HOT-ONE")
    assert state[1][1] == 40 and all(b == 0 for b, _ in state), state
    # validate on an exhausted shard asks the others too, and says no
    v = api.validate("HOT-ONE", user=users_of(0, 3, 1)[0])
    assert v.status_code == 200 and v.json()["reason"] == "limit_total_reached", v.text


def test_replay_reversal_and_validate_on_a_shard(hot):
    redis, d, api, db, rds = hot
    create(api, "HOT-REV", 3)
    user = users_of(2, 3, 1)[0]
    v = api.validate("HOT-REV", user=user)
    assert v.status_code == 200 and v.json()["valid"] is True, v.text
    first = api.redeem("HOT-REV", user=user, key="rev-1")
    again = api.redeem("HOT-REV", user=user, key="rev-1")
    assert first.status_code == again.status_code == 201, first.text
    assert again.json()["id"] == first.json()["id"]
    assert api.get(f"/v1/redemptions/{first.json()['id']}").json()["status"] == "active"
    others = [api.redeem("HOT-REV", user=f"o{i}").status_code for i in range(3)]
    assert sorted(others) == [201, 201, 422], others
    back = api.post(f"/v1/redemptions/{first.json()['id']}/reverse", {},
                    headers={"Idempotency-Key": "back-1"})
    assert back.status_code in (200, 201), back.text
    # the use went back to the shard that counted it: one more use is possible
    assert sum(b for b, _ in shards_state(rds, "HOT-REV")) == 1
    assert api.redeem("HOT-REV", user="late").status_code == 201
    assert api.redeem("HOT-REV", user="later").status_code == 422
    in_ledger(db, "HOT-REV", 4)
    rc, out = reconcile(redis, db)
    assert rc == 0, out


def test_patch_total_up_and_down(hot):
    redis, d, api, db, rds = hot
    create(api, "HOT-PATCH", 30)
    for i in range(6):
        assert api.redeem("HOT-PATCH", user=f"a{i}").status_code == 201
    up = api.patch("/v1/coupons/HOT-PATCH", {"limits": {"total": 60}})
    assert up.status_code == 200, up.text
    assert sum(up.json()["shards"]["budget"]) == 54 and up.json()["remaining"]["total"] == 54
    down = api.patch("/v1/coupons/HOT-PATCH", {"limits": {"total": 12}})
    assert down.status_code == 200, down.text
    # the lowered total is paid back from every shard before the answer
    assert sum(b for b, _ in shards_state(rds, "HOT-PATCH")) == 6
    codes = [api.redeem("HOT-PATCH", user=f"b{i}").status_code for i in range(10)]
    assert codes.count(201) == 6, codes
    assert api.get("/v1/coupons/HOT-PATCH").json()["used"]["total"] == 12
    # below what is used: nothing more, and the budgets stay at zero
    low = api.patch("/v1/coupons/HOT-PATCH", {"limits": {"total": 3}})
    assert low.status_code == 200, low.text
    assert api.redeem("HOT-PATCH", user="c").status_code == 422
    raise_again = api.patch("/v1/coupons/HOT-PATCH", {"limits": {"total": 13}})
    assert raise_again.status_code == 200
    assert [api.redeem("HOT-PATCH", user=f"d{i}").status_code for i in range(2)] == [201, 422]


def test_disable_and_edits_reach_every_shard(hot):
    redis, d, api, db, rds = hot
    create(api, "HOT-OFF", 30)
    per_shard = [users_of(s, 3, 1, prefix=f"s{s}-")[0] for s in range(3)]
    assert api.post("/v1/coupons/HOT-OFF/disable", {}).status_code == 200
    for u in per_shard:
        r = api.redeem("HOT-OFF", user=u)
        assert r.status_code == 422 and r.json()["error"]["code"] == "coupon_disabled", r.text
    assert api.post("/v1/coupons/HOT-OFF/enable", {}).status_code == 200
    for u in per_shard:
        assert api.redeem("HOT-OFF", user=u).status_code == 201
    e = api.patch("/v1/coupons/HOT-OFF", {"discount": {"type": "fixed", "value": 300},
                                          "currency": "EUR"})
    assert e.status_code == 200, e.text
    for u in per_shard:
        r = api.redeem("HOT-OFF", user=u + "x", amount=5000)
        assert r.status_code == 201 and r.json()["discount"] == 300, r.text


def test_a_lost_move_is_returned_by_reconcile(hot):
    """A daemon that dies between taking budget and giving it loses that budget: the
    coupon under-redeems, never over-redeems, until reconcile voids the move and returns
    it. Simulated by a take whose give never comes."""
    redis, d, api, db, rds = hot
    create(api, "HOT-LOST", 30)
    b = layout(rds, "HOT-LOST")
    src, dst = shard_key(b[2], "HOT-LOST"), b[0]
    rds.hincrby(src, "budget", -10)
    rds.hset(src, "o:00000000000000aa", f"10:{dst}:1930132800000")  # taken at NOW
    codes = [api.redeem("HOT-LOST", user=f"l{i}").status_code for i in range(30)]
    assert codes.count(201) == 20, codes  # the 10 in flight cannot be used
    in_ledger(db, "HOT-LOST", 20)
    rc, out = reconcile(redis, db, now=NOW)  # still young: held, not lost
    assert rc == 0, out
    rc, out = reconcile(redis, db)  # an hour later: reported
    assert rc == 1 and "move 00000000000000aa of 10" in out, out
    rc, out = reconcile(redis, db, "--repair")
    assert rc == 0 and "settled" in out, out
    assert rds.hget(src, "o:00000000000000aa") is None
    assert rds.hget(shard_key(dst, "HOT-LOST"), "v:00000000000000aa") is not None
    codes = [api.redeem("HOT-LOST", user=f"m{i}").status_code for i in range(12)]
    assert codes.count(201) == 10, codes
    # a give arriving after the void changes nothing
    assert rds.hget(shard_key(dst, "HOT-LOST"), "budget") == "0"
    in_ledger(db, "HOT-LOST", 30)
    rc, out = reconcile(redis, db)
    assert rc == 0, out


def test_a_missing_shard_is_repaired(hot):
    """A shard lost (its key deleted): the next use on it rebuilds it from the home hash;
    its budget is gone until reconcile puts the difference back on the first shard."""
    redis, d, api, db, rds = hot
    create(api, "HOT-MISS", 30)
    b = layout(rds, "HOT-MISS")
    rds.delete(shard_key(b[1], "HOT-MISS"))
    user = users_of(1, 3, 1)[0]
    r = api.redeem("HOT-MISS", user=user)
    assert r.status_code == 201, r.text  # rebuilt, then borrowed
    assert rds.hget(shard_key(b[1], "HOT-MISS"), "dtype") == "percent"
    in_ledger(db, "HOT-MISS", 1)
    rc, out = reconcile(redis, db)
    assert rc == 1 and "budgets hold 19, the total leaves 29" in out, out
    rc, out = reconcile(redis, db, "--repair")
    assert rc == 0, out
    codes = [api.redeem("HOT-MISS", user=f"n{i}").status_code for i in range(31)]
    assert codes.count(201) == 29, codes


def test_archive_takes_the_shards(hot):
    redis, d, api, db, rds = hot
    create(api, "HOT-ARCH", 10)
    assert api.redeem("HOT-ARCH", user="z").status_code == 201
    assert api.post("/v1/coupons/HOT-ARCH/disable", {}).status_code == 200
    b = layout(rds, "HOT-ARCH")
    p = subprocess.run([REDEEMCTL] + redis_flags(redis.port) +
                       [f"--pg_conninfo={db}", "archive", "--now", NOW, "--state", "disabled",
                        "--prefix", "HOT-ARCH"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    for x in b:
        assert not rds.exists(shard_key(x, "HOT-ARCH"))
        assert not rds.exists(f"{{{x:04d}}}:u:HOT-ARCH")
    r = api.redeem("HOT-ARCH", user="z2")
    assert r.status_code == 404, r.text


def test_a_shard_left_behind_is_not_inherited(hot):
    """An earlier coupon's shard that was not deleted (its archive failed halfway) holds
    budget and counts of that coupon: a new coupon of the same code drops it (the shards
    carry the generation of the coupon they belong to) instead of adding to it."""
    redis, d, api, db, rds = hot
    create(api, "HOT-GEN", 10, limits={"per_user": 1})
    b = layout(rds, "HOT-GEN")
    user = users_of(1, 3, 1)[0]
    assert api.redeem("HOT-GEN", user=user).status_code == 201
    assert api.post("/v1/coupons/HOT-GEN/disable", {}).status_code == 200
    stale = {k: v for k, v in rds.hgetall(shard_key(b[1], "HOT-GEN")).items()}
    stale_users = rds.hgetall(f"{{{b[1]:04d}}}:u:HOT-GEN")
    p = subprocess.run([REDEEMCTL] + redis_flags(redis.port) +
                       [f"--pg_conninfo={db}", "archive", "--now", NOW, "--state", "disabled",
                        "--prefix", "HOT-GEN"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    # as if the archive had died before deleting this shard, with a budget made large
    stale["budget"] = "1000"
    stale["ver"] = "99"
    rds.hset(shard_key(b[1], "HOT-GEN"), mapping=stale)
    rds.hset(f"{{{b[1]:04d}}}:u:HOT-GEN", mapping=stale_users)
    r = api.post("/v1/coupons", dict(code="HOT-GEN", discount={"type": "percent", "value": 500},
                                     limits={"total": 6, "per_user": 1}, shards=3))
    assert r.status_code == 201, r.text
    assert layout(rds, "HOT-GEN") == b
    assert sum(r.json()["shards"]["budget"]) == 6, r.json()["shards"]
    assert api.redeem("HOT-GEN", user=user).status_code == 201  # counts of the old one gone
    codes = [api.redeem("HOT-GEN", user=f"g{i}").status_code for i in range(10)]
    assert codes.count(201) == 5, codes


def test_redeemd_killed_while_shards_borrow(hot):
    """kill -9 of redeemd while every request borrows (all users on one shard, a total far
    below the demand): nothing is over-redeemed, the ledger equals the answers, and once
    reconcile has returned what a killed move held, the whole total gets used, exactly."""
    redis, d, api, db, rds = hot
    create(api, "HOT-KILL", 150)
    users = iter(users_of(0, 3, 100000, prefix="k"))
    lock, answers = threading.Lock(), []

    def load(stop):
        a = Api(d.url, api.key, now=NOW)
        while not stop.is_set():
            with lock:
                u = next(users)
            for _ in range(600):  # the same request until it has an answer
                try:
                    r = a.redeem("HOT-KILL", user=u, key=u)
                    if r.status_code != 503:
                        break
                except requests.RequestException:
                    a = Api(d.url, api.key, now=NOW)
                stop.wait(0.05)  # a retry's pause
            else:
                raise AssertionError(f"{u}: no answer")
            with lock:
                answers.append((u, r.status_code, r.json().get("id")))

    stop = threading.Event()
    ts = [threading.Thread(target=load, args=(stop,), daemon=True) for _ in range(6)]
    for t in ts:
        t.start()
    wait_for(lambda: len(answers) > 60, timeout=60, what="load running")
    d.stop(sig=9, expect=None)
    d.start()
    wait_for(lambda: sum(1 for a in answers if a[1] == 422) > 30, timeout=60,
             what="the total used up, as far as the shards can tell")
    stop.set()
    for t in ts:
        t.join(timeout=60)
    ok = {rid for _, st, rid in answers if st == 201}
    assert len(ok) <= 150
    in_ledger(db, "HOT-KILL", len(ok))
    rows = {r[0] for r in sql(db, "SELECT txn_id FROM transactions WHERE code = 'HOT-KILL' "
                                  "AND kind = 'redeem' AND outcome = 'accepted'")}
    assert rows == ok
    rc, out = reconcile(redis, db, "--repair")
    assert rc == 0, out
    a = Api(d.url, api.key, now=NOW)
    more = [a.redeem("HOT-KILL", user=next(users)).status_code for _ in range(160 - len(ok))]
    assert more.count(201) == 150 - len(ok), (len(ok), more)
    assert api.get("/v1/coupons/HOT-KILL").json()["used"]["total"] == 150
    in_ledger(db, "HOT-KILL", 150)
    rc, out = reconcile(redis, db)
    assert rc == 0, out
