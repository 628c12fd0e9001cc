"""The Redis scripts called as commands, the way redeemd calls them (EVALSHA of the script as
built, prelude included): shapes and paths the HTTP handlers do not reach on their own."""
import os

import redis as redis_lib

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


def contract(name):
    """A script's contract as the build wrote it from its header: keys, argv, variadic,
    and the answer shapes (shape -> field names)."""
    c = {"reply": {}}
    with open(os.path.join(BUILD, "generated", "lua", f"{name}.contract")) as f:
        for line in f:
            word, _, rest = line.rstrip("\n").partition(" ")
            if word == "reply":
                shape, _, fields = rest.partition(" ")
                c["reply"][shape] = fields.split()
            else:
                c[word] = rest.split()
    return c


def call(r, name, values, extra=()):
    """Runs script name with its keys and arguments taken by name from values, in the
    order its contract gives (a name missing from values is the test's bug: KeyError), the
    way the daemon does: FCALL of its function in the library when the contract names one
    (@function), else the script itself."""
    c = contract(name)
    keys = [values[k] for k in c["keys"]]
    args = [values[a] for a in c["argv"]] + list(extra)
    assert not extra or c["variadic"] == ["1"]
    if "function" in c:
        with open(os.path.join(BUILD, "generated", "lua", "library.lua")) as f:
            lib = f.read()
        try:
            r.function_load(lib)
        except redis_lib.ResponseError as e:  # loaded already (by the daemon)
            assert "already exists" in str(e)
        return r.fcall(c["function"][0], len(keys), *keys, *args)
    return r.eval(script(name), len(keys), *keys, *args)


def shape(name, reply):
    """Checks reply against the contract's shape named by its status: the fields it says,
    in that number; returns them by name."""
    shapes = contract(name)["reply"]
    if isinstance(reply, (str, bytes)):  # an ok answer comes packed: values joined by '\0'
        reply = reply.split("\0" if isinstance(reply, str) else b"\0")
    if len(shapes) == 1 and next(iter(shapes.values()))[0] != "status":
        fields = next(iter(shapes.values()))  # one shape, not told apart by a status
    else:
        fields = shapes[reply[0]]
    assert len(reply) == len(fields), (name, reply, fields)
    return dict(zip(fields, reply))


def test_answers_follow_the_contracts(stack):
    """Every money and use script, called as redeemd calls it, answers in the shapes its
    contract names: the C handlers read these fields by the same names."""
    redis, d, api, _ = stack
    r = redis.client()
    c = api.create(limits={"total": 1}, expires_at="2099-01-01T00:00:00Z")
    v = api.post("/v1/coupons", {"code": "FUZZ-V-" + c["code"][-6:], "kind": "voucher",
                                 "balance": 1000, "currency": "EUR"}).json()
    n = [0]

    def vals(code, **over):
        n[0] += 1
        ck = key_of(r, code)
        b = ck.split(":c:")[0]
        txn = f"rdm_{b[1:5]}_{n[0]:020d}"
        ref = over.get("ref_id", "")
        base = {"coupon": ck, "users": f"{b}:u:{code}", "idem": f"{b}:i:30000:63333333",
                "idem_1": f"{b}:i:30000:63333332", "idem_2": f"{b}:i:30000:63333331",
                "idem_v1": f"{b}:i:{code}:k:{n[0]}", "log": f"{b}:log",
                "mark": f"{b}:x:{ref}", "record_v1": f"{b}:r:{ref}", "now_ms": "1900000000000",
                "user_id": "u1", "order_amount": "1000", "amount": "100", "currency": "EUR",
                "fp": "f" * 8, "txn": txn, "idem_field": f"field{n[0]:07d}",
                "idem_slice_ms": "30000", "order_id": "", "client_ip": "127.0.0.1",
                "key_id": "k", "request_id": "q", "idem_key": f"i{n[0]}", "code": code,
                "mode": "redeem", "max_balance": "5000", "channel": "link", "recipient": "",
                "ref_id": ref, "group": "pgsink", "created_ms": "1900000000000", "day": "",
                "week": "", "window_ms": "86400000", "campaign": "", "paid": "100",
                "sid": "", "tag": "", "shard": f"{b}:s:{code}", "route": "", "cx": ""}
        base.update(over)
        return base

    def facts(code, use_id):
        """use_read's answer for a use id, by the id's parts (as rd_txn_id_parse splits it)."""
        sid, tag = use_id.split("_")[2], use_id.split("_")[3]
        return shape("use_read", call(r, "use_read", vals(code, ref_id=use_id, sid=sid, tag=tag)))

    ok = shape("redeem", call(r, "redeem", vals(c["code"])))
    assert ok["status"] == "ok" and ok["dtype"] == "percent" and ok["rem_total"] == "0"
    rid = ok["id"]
    f = facts(c["code"], rid)
    assert f["status"] == "found" and f["kind"] == "redeem" and f["given"] == ""
    assert f["code"] == c["code"] and f["amount"] == "1000" and f["created_at"] == "1900000000000"
    rej = shape("redeem", call(r, "redeem", vals(c["code"], user_id="u2")))
    assert rej["reason"] == "limit_total_reached"
    assert facts(c["code"], rej["id"])["status"] == "missing"  # a refusal is not a use
    rev = vals(c["code"], ref_id=rid, idem_key="", day=f["day"], week=f["week"])
    assert shape("reverse", call(r, "reverse", rev))["status"] == "ok"
    assert shape("reverse", call(r, "reverse", rev))["reason"] == "already_reversed"
    assert facts(c["code"], rid)["given"] == "reversed"
    late = vals(c["code"], ref_id=rid + "x", now_ms=str(1900000000000 + 86400001))
    assert shape("reverse", call(r, "reverse", late))["reason"] == "reversal_window_passed"
    gone = vals(c["code"], ref_id=rid, sid="1-1", tag=rid.split("_")[3])
    assert shape("use_read", call(r, "use_read", gone))["status"] == "ledger"

    paid = shape("pay", call(r, "pay", vals(v["code"])))
    assert paid["status"] == "ok" and paid["balance_after"] == "900"
    assert facts(v["code"], paid["id"])["kind"] == "pay"
    assert shape("pay", call(r, "pay", vals(v["code"], amount="5000")))["reason"] == \
        "insufficient_balance"
    ref = vals(v["code"], ref_id=paid["id"], amount="40")
    back = shape("refund", call(r, "refund", ref))
    assert back["amount"] == "40" and back["refundable_after"] == "60"
    assert shape("refund", call(r, "refund", dict(ref, amount="41")))["status"] == "reused"
    assert shape("refund", call(r, "refund", dict(ref, amount="100", idem_key="other")))[
        "reason"] == "refund_exceeds_payment"
    assert facts(v["code"], paid["id"])["refunded"] == "40"

    assert shape("recharge", call(r, "recharge", vals(v["code"])))["balance_after"] == "1040"
    assert shape("recharge", call(r, "recharge", vals(v["code"], amount="4900")))["reason"] == \
        "balance_limit_exceeded"

    assert shape("share", call(r, "share", vals(c["code"])))["shares"] == "1"
    gone = vals(c["code"])
    gone["coupon"] = gone["coupon"].rsplit(":c:", 1)[0] + ":c:NO-SUCH-CODE"
    assert shape("share", call(r, "share", gone))["reason"] == "coupon_not_found"

    ids = [e[0] for e in r.xrange(vals(c["code"])["log"])]
    acked = shape("ship_ack", call(r, "ship_ack", vals(c["code"]), ids))
    assert acked["acked"] >= 0 and acked["trimmed"] >= 0


def test_every_script_has_a_contract():
    """The build refuses a script without @keys and @argv; each one it embedded wrote its
    contract, and names its keys and arguments once each."""
    names = [f[:-4] for f in os.listdir(os.path.join(BUILD, "generated", "lua"))
             if f.endswith(".lua") and f != "library.lua"]
    assert len(names) >= 11
    with open(os.path.join(BUILD, "generated", "lua", "library.lua")) as f:
        lib = f.read()
    functions = []
    for name in names:
        c = contract(name)
        assert c["keys"] and len(set(c["keys"])) == len(c["keys"]), name
        assert len(set(c["argv"])) == len(c["argv"]), name
        if "function" in c:  # @function: in the library, named with its digest
            assert f"redis.register_function('{c['function'][0]}', " in lib, name
            assert c["function"][0].endswith(lib.split()[1].split("_")[-1]), name
            functions.append(name)
    # the checkout's two; exactly those are in the library
    assert sorted(functions) == ["pay", "redeem"]
    assert lib.count("redis.register_function(") == 2
