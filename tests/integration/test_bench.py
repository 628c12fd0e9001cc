"""The bench smoke: redeem-bench runs every workload briefly against a real stack and its
invariant checks pass; a planted inconsistency makes it fail loudly. Never a speed check."""
import json
import subprocess
import threading
import time

import pytest

from conftest import REDEEM_BENCH


def bench(d, redis, conninfo, api, *args, timeout=120):
    cmd = [REDEEM_BENCH, "--url", d.url, "--key", api.key, "--json", "-q",
           "--pg", conninfo, "--redis", f"127.0.0.1:{redis.port}", "--drain-timeout", "60",
           "-c", "8", "--warmup", "0.2"] + list(args)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("workload,extra", [
    ("redeem-hot", ["-n", "600", "--total", "250"]),            # the limit is hit, exactly
    ("redeem-many", ["-d", "1", "--coupons", "20", "--users", "30", "--per-user", "2"]),
    ("mixed", ["-d", "1.5", "--coupons", "5", "--users", "50", "--per-user", "3"]),
    ("validate", ["-d", "0.5"]),
    ("unknown", ["-d", "0.5"]),
    ("redeem-hot", ["-d", "1", "--rate", "300"]),                 # open loop
    # vouchers run dry: the balance check meets insufficient_balance
    ("voucher-pay", ["-d", "1.5", "--coupons", "3", "--balance", "300", "--amount", "2"]),
])
def test_workload_runs_and_invariants_hold(stack, workload, extra):
    redis, d, api, conninfo = stack
    p = bench(d, redis, conninfo, api, "-w", workload, *extra)
    assert p.returncode == 0, p.stdout + p.stderr
    out = json.loads(p.stdout)
    assert out["invariants"]["ok"] and out["invariants"]["violations"] == 0
    assert out["requests"] > 0 and out["latency"]["p50_ms"] > 0
    assert out["latency"]["p50_ms"] <= out["latency"]["p99_ms"] <= out["latency"]["max_ms"]
    assert sum(out["status"].values()) == out["requests"]
    assert out["server"]["cpu_seconds"] >= 0
    if workload == "redeem-hot" and "--total" in extra:
        assert out["invariants"]["accepted_total"] == 250
        assert out["codes"].get("limit_total_reached", 0) > 0
    if workload == "unknown":
        assert set(out["status"]) == {"404"}
    if workload == "mixed":
        assert {"validate", "redeem"} <= set(out["by_op"])
    if workload == "voucher-pay":
        assert out["invariants"]["accepted_total"] <= 3 * 150
        assert out["by_op"]["pay"]["count"] == out["requests"]
    if "--rate" in extra:
        assert out["mode"] == "open"  # its pace is bench/'s to measure, not a test's


def test_a_planted_counter_error_fails_the_run(stack):
    """Somebody bumps a coupon's used count behind redeemd's back during the run: the check
    after the run must see that Redis disagrees with the answers, and exit 1."""
    redis, d, api, conninfo = stack
    r = redis.client()
    planted = threading.Event()

    def plant():
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not planted.is_set():
            for key in r.scan_iter(match="*:c:RB*"):
                r.hincrby(key, "used", 3)
                planted.set()
                return
            time.sleep(0.02)

    t = threading.Thread(target=plant)
    t.start()
    p = bench(d, redis, conninfo, api, "-w", "redeem-hot", "-d", "1.5")
    t.join()
    assert planted.is_set()
    assert p.returncode == 1, p.stdout + p.stderr
    assert "INVARIANT VIOLATED" in p.stderr and "used=" in p.stderr
    assert json.loads(p.stdout)["invariants"]["ok"] is False


def test_bad_arguments_are_refused(stack):
    redis, d, api, conninfo = stack
    p = subprocess.run([REDEEM_BENCH, "--url", d.url], capture_output=True, text=True)
    assert p.returncode == 2 and "--key is required" in p.stderr
    p = subprocess.run([REDEEM_BENCH, "--key", "x", "-w", "nonsense"], capture_output=True,
                       text=True)
    assert p.returncode == 2 and "unknown workload" in p.stderr
    p = subprocess.run([REDEEM_BENCH, "--url", "http://127.0.0.1:1", "--key", "x"],
                       capture_output=True, text=True)
    assert p.returncode == 2 and "not ready" in p.stderr


def test_no_check_says_not_checked(stack):
    """--no-check skips the checks, and says so: never "invariants ok"."""
    redis, d, api, conninfo = stack
    p = bench(d, redis, conninfo, api, "-w", "redeem-hot", "-n", "50", "--no-check")
    assert p.returncode == 0, p.stderr
    inv = json.loads(p.stdout)["invariants"]
    assert inv["ok"] is None and inv["checked"] is False
    p = subprocess.run([REDEEM_BENCH, "--url", d.url, "--key", api.key, "-q", "-w", "validate",
                        "-n", "20", "--no-check"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and "invariants not checked" in p.stdout, p.stdout
    assert "invariants ok" not in p.stdout
