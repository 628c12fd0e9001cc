"""Sharing a code: the message and WhatsApp link as the seed coupon manager made them, the
share recorded on the coupon and in the ledger, and refusals for codes no one can use."""
from urllib.parse import parse_qs, urlsplit

from test_ledger import drained, rows

NOW = "2030-06-01T10:00:00Z"


def test_share_message_link_and_record(stack):
    redis, d, api, conninfo = stack
    api.now = "2030-06-01T00:00:00Z"  # this test's clock: every date in it is after
    c = api.create(expires_at="2030-07-19T00:00:00Z", campaign="summer")
    r = api.post(f"/v1/coupons/{c['code'].lower()}/share",
                 {"channel": "whatsapp", "recipient": "+49 170 1234567",
                  "message": "Hey! Hurry up, valid only until the date below."},
                 headers={"X-Redeemd-Now": NOW})
    assert r.status_code == 200, r.text
    s = r.json()
    text = f"Hey! Hurry up, valid only until the date below.\n\n{c['code']} (valid until 18 Jul 2030)"
    assert s["message"] == text and s["shares"] == 1 and s["shared_at"] == NOW
    url = urlsplit(s["whatsapp_url"])
    assert (url.scheme, url.netloc, url.path) == ("https", "wa.me", "/")
    assert parse_qs(url.query)["text"] == [text]
    assert " " not in s["whatsapp_url"] and "\n" not in s["whatsapp_url"]
    # defaults: whatsapp, a plain intro; the count goes up
    s2 = api.post(f"/v1/coupons/{c['code']}/share").json()
    assert s2["channel"] == "whatsapp" and s2["recipient"] is None and s2["shares"] == 2
    assert s2["message"].startswith("Here is your code.\n\n")
    g = api.get(f"/v1/coupons/{c['code']}").json()
    assert g["shares"] == 2 and g["shared_at"] is not None
    assert api.create()["shares"] == 0
    drained(d)
    got = rows(conninfo, """SELECT outcome, user_id, details->'after'->>'channel'
                            FROM transactions WHERE code = %s AND kind = 'share'
                            ORDER BY ts DESC""",  # the first share was at NOW (2030)
               c["code"])
    assert got[0] == ("accepted", "+49 170 1234567", "whatsapp") and len(got) == 2


def test_share_refusals(api):
    api.now = "2029-12-01T00:00:00Z"  # this test's clock: every date in it is after
    c = api.create(expires_at="2030-01-01T00:00:00Z")
    r = api.post(f"/v1/coupons/{c['code']}/share", headers={"X-Redeemd-Now": "2030-01-02T00:00:00Z"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "coupon_expired"
    assert api.post(f"/v1/coupons/{c['code']}/disable").status_code == 200
    r = api.post(f"/v1/coupons/{c['code']}/share")
    assert r.status_code == 422 and r.json()["error"]["code"] == "coupon_disabled"
    r = api.post("/v1/coupons/NO-SUCH-CODE/share")
    assert r.status_code == 404 and r.json()["error"]["code"] == "coupon_not_found"
    ok = api.create()
    for body, field in [({"channel": "pigeon"}, "channel"), ({"recipient": ""}, "recipient"),
                        ({"message": "x" * 1001}, "message"), ({"colour": 1}, "colour")]:
        r = api.post(f"/v1/coupons/{ok['code']}/share", body)
        assert r.status_code == 400 and r.json()["error"]["details"]["field"] == field, r.text
