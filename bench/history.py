#!/usr/bin/python3
"""bench/history: what the back office costs as the ledger grows (issue 13).

Builds a large history through the real path and times every back-office read at each
ledger size, on the stack of ./scripts/run (bench/history starts it if needed):

  1. a batch of RD_COUPONS codes (1,000,000), a few hot coupons, an archived one;
  2. history: synthetic outbox entries of the shapes the scripts write (redemptions accepted
     and refused, probes of unknown codes, reversals, payments) appended to the bucket streams
     with XADD, so that the shipper ships them into PostgreSQL exactly as it ships real ones
     (this also measures the shipper's rows per second); the backlog is kept under 200,000;
  3. at each ledger size in RD_LEVELS (100000,1000000,10000000): each read RD_REPS times
     (20), median and 90th percentile as the client sees them: listing pages (plain, by
     campaign, by status), a coupon (live, archived), the stats, transaction pages by code,
     user, IP, kind, reason, outcome and time windows, and after a deep cursor (half the ledger in);
  4. Redis bytes per redemption: 50,000 redemptions of one coupon by 1,000 users (redeem-bench),
     outbox drained, INFO used_memory before and after, the per-user hash counted apart.

Prints a table and writes var/history.json. Environment: RD_LEVELS, RD_COUPONS, RD_REPS,
REDEEMD_PORT, RD_REDIS_PORT, RD_PG_PORT.
"""
import json
import os
import random
import statistics
import subprocess
import sys
import time
import uuid

import psycopg2
import redis
import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
URL = f"http://127.0.0.1:{os.environ.get('REDEEMD_PORT', '8080')}"
REDIS_PORT = int(os.environ.get("RD_REDIS_PORT", "6390"))
PG = f"host=127.0.0.1 port={os.environ.get('RD_PG_PORT', '5440')} dbname=redeemd user=redeemd"
LEVELS = [int(x) for x in os.environ.get("RD_LEVELS", "100000,1000000,10000000").split(",")]
COUPONS = int(os.environ.get("RD_COUPONS", "1000000"))
REPS = int(os.environ.get("RD_REPS", "20"))
BACKLOG_MAX = int(os.environ.get("RD_BACKLOG_MAX", "200000"))
STEP_MS = 500
ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"


def say(*a):
    print("==>", *a, file=sys.stderr, flush=True)


KEY = open(os.path.join(ROOT, "var", "admin.key")).read().strip()
S = requests.Session()
S.headers.update({"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
R = redis.Redis(port=REDIS_PORT, decode_responses=True)
BUCKETS = int(R.hget("rd:meta", "buckets") or 1024)


def bucket(code):
    h = 2166136261
    for ch in code.encode():
        h = ((h ^ ch) * 16777619) % 2 ** 32
    return h % BUCKETS


def sql(q, *args):
    with psycopg2.connect(PG) as c, c.cursor() as cur:
        cur.execute(q, args)
        return cur.fetchall() if cur.description else None


def readyz():
    return S.get(URL + "/readyz", timeout=10).json()


def backlog():
    b = readyz()["outbox_backlog"]
    return b if b is not None else BACKLOG_MAX


def wait_drained():
    while backlog() > 0:
        time.sleep(0.5)


# ---- 1. coupons -----------------------------------------------------------------------------

def setup():
    have = sql("SELECT id, created FROM batches WHERE campaign = 'history' AND state = 'done' "
               "ORDER BY created_at LIMIT 1")
    if have and have[0][1] >= COUPONS:
        batch = have[0][0]
        say(f"using batch {batch} ({have[0][1]:,} codes)")
    else:
        say(f"a batch of {COUPONS:,} codes (campaign history)")
        body = {"count": COUPONS, "format": {"prefix": "HIST-", "length": 10},
                "template": {"discount": {"type": "percent", "value": 1000},
                             "limits": {"total": 3}, "campaign": "history",
                             "tags": ["Regular"], "expires_in_days": 365}}
        batch = S.post(URL + "/v1/batches", json=body, timeout=30).json()["id"]
        while S.get(URL + f"/v1/batches/{batch}", timeout=10).json()["state"] in ("queued",
                                                                                  "running"):
            time.sleep(1)
    codes = [r[0] for r in sql("SELECT code FROM coupon_rows WHERE batch_id = %s LIMIT 20000",
                               batch)]
    hot = []
    for i in range(10):
        code = f"HIST-HOT-{i}"
        S.post(URL + "/v1/coupons", json={"code": code, "campaign": "history-hot",
                                          "discount": {"type": "percent", "value": 500},
                                          "currency": "EUR"}, timeout=10)
        hot.append(code)
    arch = "HIST-ARCHIVED"
    if S.get(URL + f"/v1/coupons/{arch}", timeout=10).status_code == 404:
        S.post(URL + "/v1/coupons", json={"code": arch, "limits": {"total": 1},
                                          "discount": {"type": "percent", "value": 500},
                                          "currency": "EUR"}, timeout=10)
        S.post(URL + "/v1/redemptions", json={"code": arch, "user_id": "a", "order_amount": 100,
                                              "currency": "EUR"},
               headers={"Idempotency-Key": uuid.uuid4().hex}, timeout=10)
        wait_drained()
        subprocess.run([os.path.join(ROOT, "build", "redeemctl"), "--config",
                        os.path.join(ROOT, "var", "redeemd.conf"), "archive", "--state",
                        "exhausted", "--prefix", "HIST-ARCHIVED"], check=True,
                       stdout=subprocess.DEVNULL)
    return codes, hot, arch


# ---- 2. history -----------------------------------------------------------------------------

def rid(code):
    return f"rdm_{bucket(code):04d}_" + "".join(random.choice(ALPHABET) for _ in range(20))


def entry(ts, codes, hot, recent):
    """One outbox entry as the scripts write it (fields of redeem.lua, pay.lua, reverse.lua)."""
    code = random.choice(hot) if random.random() < 0.5 else random.choice(codes)
    user = f"hu{random.randrange(100_000)}"
    ip = f"10.{random.randrange(40)}.{random.randrange(256)}.{random.randrange(256)}"
    base = {"ts": str(ts), "code": code, "campaign": "history", "user": user, "order": "",
            "amount": "10000", "currency": "EUR", "ip": ip, "key": "histbench", "req": "r",
            "idem": "i", "reason": ""}
    x = random.random()
    if x < 0.70:
        day = ts // 86400000
        base.update(kind="redeem", outcome="accepted", dtype="percent", dvalue="1000", dmax="",
                    min_order="", day=str(day), week=str((day + 3) // 7), left=",,,")
        base["id"] = rid(code)
        recent.append((base["id"], code, user))
    elif x < 0.80:
        base.update(kind="redeem", outcome="rejected", reason="limit_user_reached",
                    id=rid(code))
    elif x < 0.90:
        unknown = "HIST-NO-" + "".join(random.choice("ABCDEFGHJK") for _ in range(8))
        base.update(kind="validate", outcome="rejected", reason="coupon_not_found",
                    code=unknown, campaign="", id=rid(unknown))
        code = unknown
    elif x < 0.95 and recent:
        ref, code, user = recent[random.randrange(len(recent))]
        base.update(kind="reverse", outcome="accepted", code=code, user=user, ref=ref,
                    id=rid(code))
    else:
        base.update(kind="pay", outcome="rejected", reason="kind_mismatch", id=rid(code))
    return f"{{{bucket(code):04d}}}:log", base


def grow(target, codes, hot, recent):
    have = sql("SELECT count(*) FROM transactions")[0][0]
    need = target - have
    if need <= 0:
        return None
    say(f"history: {have:,} -> {target:,} ledger rows ({need:,} entries)")
    # event times as a real ledger has them: in the order of shipping, STEP_MS apart, the
    # largest level ending about now (10M rows: 58 days, three monthly partitions)
    first_ts = int(time.time() * 1000) - max(LEVELS) * STEP_MS + have * STEP_MS
    shipped0 = readyz()["ledger"]["shipped_rows"]
    t0 = time.time()
    left = need
    while left > 0:
        while backlog() > BACKLOG_MAX:
            time.sleep(0.2)
        p = R.pipeline(transaction=False)
        n = min(left, 20_000)
        for k in range(n):
            ts = first_ts + (need - left + k) * STEP_MS + random.randrange(-2000, 2000)
            stream, fields = entry(ts, codes, hot, recent)
            p.xadd(stream, fields)
        p.execute()
        left -= n
        if len(recent) > 100_000:
            del recent[:50_000]
    wait_drained()
    secs = time.time() - t0
    rows = readyz()["ledger"]["shipped_rows"] - shipped0
    say(f"  shipped {rows:,} rows in {secs:.0f} s: {rows / secs:,.0f} rows/s")
    return rows / secs


# ---- 3. reads -------------------------------------------------------------------------------

def timed(path, reps=REPS):
    t = []
    fails = 0
    for _ in range(reps):
        a = time.perf_counter()
        r = S.get(URL + path, timeout=120)
        t.append((time.perf_counter() - a) * 1000)
        if r.status_code != 200:
            fails += 1
    t.sort()
    return {"p50_ms": round(statistics.median(t), 2), "p90_ms": round(t[int(len(t) * 0.9) - 1], 2),
            "failed": fails}


def reads(total, hot, arch):
    newest = sql("SELECT extract(epoch FROM max(ts)) FROM transactions")[0][0]

    def since(secs):  # the last hour or day of the history
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(float(newest) - secs))

    mid = sql("SELECT txid::text || '.' || (extract(epoch FROM ts) * 1000000)::bigint || '.' || "
              "txn_id FROM transactions ORDER BY txid, ts, txn_id "
              "OFFSET %s LIMIT 1", total // 2)[0][0]
    user = sql("SELECT user_id FROM transactions WHERE user_id IS NOT NULL "
               "ORDER BY user_id LIKE 'hu%%' DESC LIMIT 1")[0][0]
    ip = sql("SELECT host(client_ip) FROM transactions WHERE client_ip IS NOT NULL "
             "ORDER BY api_key_id = 'histbench' DESC LIMIT 1")[0][0]
    paths = {
        "coupons page": "/v1/coupons?limit=50",
        "coupons by campaign": "/v1/coupons?campaign=history&limit=50",
        "coupons exhausted": "/v1/coupons?status=exhausted&limit=10",
        "coupons used": "/v1/coupons?status=used&limit=10",
        "coupons active": "/v1/coupons?status=active&limit=10",
        "coupons archived": "/v1/coupons?status=archived&limit=10",
        "coupons expired (none)": "/v1/coupons?status=expired&limit=10",
        "coupons scheduled (none)": "/v1/coupons?status=scheduled&limit=10",
        "coupons disabled (none)": "/v1/coupons?status=disabled&limit=10",
        "coupon (live)": f"/v1/coupons/{hot[0]}",
        "coupon (archived)": f"/v1/coupons/{arch}",
        "stats": "/v1/stats",
        "transactions by code": f"/v1/transactions?code={hot[1]}&limit=50",
        "transactions by user": f"/v1/transactions?user_id={user}&limit=50",
        "transactions by ip": f"/v1/transactions?client_ip={ip}&limit=50",
        "transactions deep cursor": f"/v1/transactions?cursor={mid}&limit=50",
        "transactions by kind (rare)": "/v1/transactions?kind=coupon_archive&limit=50",
        "transactions by kind": "/v1/transactions?kind=reverse&limit=50",
        "transactions by reason": "/v1/transactions?reason=kind_mismatch&limit=50",
        "transactions rejected": "/v1/transactions?outcome=rejected&limit=50",
        "transactions refused reversals": "/v1/transactions?kind=reverse&outcome=rejected"
                                          "&limit=50",
        "transactions two codes": f"/v1/transactions?code={hot[1]}&code={hot[2]}&limit=50",
        "transactions two users": f"/v1/transactions?user_id={user}&user_id=hu7&limit=50",
        "transactions last day": f"/v1/transactions?from={since(86400)}&limit=50",
        "transactions last hour": f"/v1/transactions?from={since(3600)}&limit=50",
        # an hour shipped in the synthetic backlog: its shipping transactions span a day
        "transactions hour, day ago": f"/v1/transactions?from={since(90000)}"
                                      f"&to={since(86400)}&limit=50",
    }
    out = {}
    for name, path in paths.items():
        out[name] = timed(path)
        say(f"  {name:26s} p50 {out[name]['p50_ms']:9.2f} ms  p90 {out[name]['p90_ms']:9.2f} ms"
            + (f"  {out[name]['failed']} failed" if out[name]["failed"] else ""))
    return out


# ---- 4. Redis bytes per redemption ------------------------------------------------------------

def redis_bytes():
    def used():
        return int(R.info("memory")["used_memory"])
    bench = [os.path.join(ROOT, "build", "redeem-bench"), "--url", URL, "--key", KEY,
             "-w", "redeem-hot", "--users", "1000", "--no-check", "-q"]
    subprocess.run(bench + ["-n", "2000"], check=True, stdout=subprocess.DEVNULL)
    wait_drained()
    users0 = set(R.scan_iter(match="{*}:u:*", count=10000))
    m0 = used()
    n = 50_000
    subprocess.run(bench + ["-n", str(n)], check=True, stdout=subprocess.DEVNULL)
    wait_drained()
    m1 = used()
    new_users = [k for k in R.scan_iter(match="{*}:u:*", count=10000) if k not in users0]
    ub = sum(R.memory_usage(k, samples=0) for k in new_users)
    fields = sum(R.hlen(k) for k in new_users)
    per = (m1 - m0 - ub) / n
    say(f"Redis: {per:.0f} bytes per redemption (per-user counts aside), "
        f"{ub / max(fields, 1):.0f} bytes per (coupon, user)")
    return {"bytes_per_redemption": round(per, 1),
            "bytes_per_coupon_user": round(ub / max(fields, 1), 1)}


def main():
    codes, hot, arch = setup()
    recent = []
    result = {"levels": {}, "coupons": COUPONS, "reps": REPS}
    for level in LEVELS:
        rate = grow(level, codes, hot, recent)
        total = sql("SELECT count(*) FROM transactions")[0][0]
        say(f"reads at {total:,} ledger rows")
        result["levels"][str(level)] = {"rows": total, "ship_rows_per_s": rate,
                                        "reads": reads(total, hot, arch)}
    result["redis"] = redis_bytes()
    with open(os.path.join(ROOT, "var", "history.json"), "w") as f:
        json.dump(result, f, indent=1)
    names = list(next(iter(result["levels"].values()))["reads"])
    levels = list(result["levels"])
    print("read (p50 ms)".ljust(28) + "".join(f"{int(lv):>14,}" for lv in levels) + "   ratio")
    for n in names:
        v = [result["levels"][lv]["reads"][n]["p50_ms"] for lv in levels]
        print(n.ljust(28) + "".join(f"{x:14.2f}" for x in v) + f"   {v[-1] / max(v[0], 0.01):.2f}")
    for lv in levels:
        r = result["levels"][lv]["ship_rows_per_s"]
        if r:
            print(f"shipper while growing to {int(lv):,} rows: {r:,.0f} rows/s")
    print(f"Redis per redemption: {result['redis']['bytes_per_redemption']} bytes "
          f"(per (coupon, user): {result['redis']['bytes_per_coupon_user']})")


if __name__ == "__main__":
    main()
