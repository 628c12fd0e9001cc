"""docs/openapi.json: a valid OpenAPI 3.1 document (the OpenAPI Initiative's schema, vendored
in tests/openapi/, and every Schema Object a valid JSON Schema 2020-12), what docs/openapi.py
writes, what GET /openapi.json serves, and exactly the routes the daemon serves: every
documented operation answers (no 404 for the route, no 405) and nothing the router has is
left out. Every answer of the other integration tests is checked against its schema by
conftest.Api (conftest.Contract)."""
import copy
import json
import os
import re
import subprocess
import sys
import tempfile

import pytest
import requests

from conftest import CONTRACT, ROOT

jsonschema = pytest.importorskip("jsonschema")
DOC_PATH = os.path.join(ROOT, "docs", "openapi.json")
OAS = os.path.join(ROOT, "tests", "openapi", "oas-3.1-schema.json")


def doc():
    with open(DOC_PATH) as f:
        return json.load(f)


def oas_errors(d):
    with open(OAS) as f:
        schema = json.load(f)
    return list(jsonschema.Draft202012Validator(schema).iter_errors(d))


def test_the_document_is_valid_openapi_3_1():
    d = doc()
    assert d["openapi"].startswith("3.1.")
    assert not oas_errors(d), [e.message for e in oas_errors(d)][:5]
    for name, s in d["components"]["schemas"].items():
        jsonschema.Draft202012Validator.check_schema(s)
    # and the check can fail: a response without its description, an unknown field
    broken = copy.deepcopy(d)
    del broken["paths"]["/healthz"]["get"]["responses"]["200"]["description"]
    assert oas_errors(broken)
    broken = copy.deepcopy(d)
    broken["paths"]["/healthz"]["get"]["summery"] = "typo"
    assert oas_errors(broken)
    # every operation has examples of its errors, its headers and an id
    ids = [op["operationId"] for p in d["paths"].values() for m, op in p.items()
           if m in ("get", "post", "patch", "delete")]
    assert len(ids) == len(set(ids)) and all(ids)
    params = {p.get("name") for p in d["components"]["parameters"].values()}
    assert {"Idempotency-Key", "X-Request-Id"} <= params
    assert {"Retry-After", "X-Request-Id"} <= set(d["components"]["headers"])


def test_the_document_is_what_the_generator_writes():
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        subprocess.run([sys.executable, os.path.join(ROOT, "docs", "openapi.py"), f.name],
                       check=True, stdout=subprocess.DEVNULL)
        assert json.load(open(f.name)) == doc(), "run docs/openapi.py and commit the result"


def router_routes():
    """(method, path) of daemon/server/http.c's routing table, '*' as {param}."""
    src = open(os.path.join(ROOT, "daemon", "server", "http.c")).read()
    table = src[src.index("static const struct route routes[]"):]
    table = table[:table.index("};")]
    out = set()
    for m, path in re.findall(r'\{RD_HM_(\w+), "([^"]+)"', table):
        out.add((m.lower(), re.sub(r"\*", "{}", path)))
    return out


def doc_routes():
    out = set()
    for p, item in doc()["paths"].items():
        for m in item:
            if m in ("get", "post", "patch", "delete", "put"):
                out.add((m, re.sub(r"\{[^}]+\}", "{}", p)))
    return out


def test_every_served_route_is_documented_and_nothing_else():
    served, documented = router_routes(), doc_routes()
    assert len(served) > 30
    assert served - documented == set(), "served, not documented"
    assert documented - served == set(), "documented, not served"


def test_every_documented_operation_answers(stack):
    """Black box: each documented operation, called with a key of every scope and an empty
    or minimal body, is routed (any answer but the router's 404 and 405)."""
    redis, d, api, db = stack
    for method, path in sorted(doc_routes()):
        url = d.url + path.replace("{}", "X1")
        r = requests.request(method.upper(), url, headers={
            "Authorization": f"Bearer {api.key}", "Content-Type": "application/json",
            "Idempotency-Key": "probe"}, data="{}" if method != "get" else None, timeout=10)
        assert r.status_code != 405, (method, path, r.text)
        if r.status_code == 404:
            assert r.json()["error"]["message"] != "no such endpoint", (method, path)


def test_served_document_is_the_committed_one(stack):
    redis, d, api, db = stack
    r = requests.get(f"{d.url}/openapi.json", timeout=10)
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/json"
    assert r.json() == doc()
    assert r.headers["Access-Control-Allow-Origin"] == "*"


def test_answers_are_checked_against_their_schemas(stack):
    """conftest.Contract fails a test on an answer its schema refuses: shown here with a
    document whose Coupon schema demands a field no coupon has."""
    redis, d, api, db = stack
    assert CONTRACT is not None
    before = CONTRACT.checked
    api.create(code="OAS-1")
    assert api.get("/v1/coupons/OAS-1").status_code == 200
    assert CONTRACT.checked >= before + 2
    coupon = CONTRACT.doc["components"]["schemas"]["Coupon"]  # (in place: refs are cached)
    saved = coupon["required"]
    coupon["required"] = saved + ["no_such_field"]
    try:
        with pytest.raises(AssertionError, match="does not match"):
            api.get("/v1/coupons/OAS-1")
    finally:
        coupon["required"] = saved
