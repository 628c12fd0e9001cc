"""The Redis scripts called as commands, the way redeemd calls them (EVALSHA of the script as
built, prelude included): shapes and paths the HTTP handlers do not reach on their own."""
import os

from conftest import BUILD
from test_batches import batch, codes_of, finished


def script(name):
    with open(os.path.join(BUILD, "generated", "lua", f"{name}.lua")) as f:
        return f.read()


def key_of(r, code):
    return next(r.scan_iter(match=f"{{*}}:c:{code}", count=10000))


def test_coupon_write_checks_before_it_writes(stack):
    """An update whose version check fails changes nothing, also for a batch code (whose
    definition used to be copied out of its template before the check)."""
    redis, d, api, _ = stack
    b = batch(api, 3).json()
    assert finished(api, b["id"])["state"] == "done"
    code = codes_of(api, b["id"])[0]
    r = redis.client()
    ck = key_of(r, code)
    log = ck.split(":c:")[0] + ":log"
    own = r.hgetall(ck)
    xlen = r.xlen(log)
    body = script("coupon_write")
    args = ["update", "999", "1900000000000", "t_x", "k", "req", "127.0.0.1",
            "coupon_update", "campaign", "other"]
    assert r.eval(body, 2, ck, log, *args) == ["rejected", "conflict"]
    assert r.hgetall(ck) == own and "campaign" not in own  # not materialized
    assert r.xlen(log) == xlen
    # with the right version it goes through, and from then on the code has its own copy
    args[1] = r.hget(ck.split(":c:")[0] + ":t:" + own["t"], "ver")  # the template's
    assert args[1]
    res = r.eval(body, 2, ck, log, *args)
    assert res[0] == "ok"
    assert r.hget(ck, "campaign") == "other" and r.xlen(log) == xlen + 1
