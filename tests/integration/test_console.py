"""The web console (/console/) in headless Chromium, driven by Selenium: sign in, create a
coupon and find it, see its row turn from yellow (valid) to green (used) once it is redeemed
through the API, share it, export CSV, run a batch and watch its progress bar finish, a
voucher's balance, recharge and history, the stats charts, the transactions, scopes, and an
XSS probe. A screenshot of every screen goes to <build>/test-output/console/."""
import csv
import os
import shutil
import tempfile

import pytest

from conftest import BUILD, Api, key_loaded, make_key, wait_for

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import WebDriverException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402

SHOTS = os.path.join(BUILD, "test-output", "console")
XSS = '<img src=x onerror="document.title=\'pwned\'">'


@pytest.fixture()
def browser():
    downloads = tempfile.mkdtemp(prefix="console-dl-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
              "--window-size=1400,1000", "--no-first-run", "--disable-extensions"):
        opts.add_argument(a)
    opts.add_experimental_option("prefs", {"download.default_directory": downloads,
                                           "download.prompt_for_download": False})
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path="/usr/bin/chromedriver")
    drv = webdriver.Chrome(options=opts, service=service)
    drv.set_page_load_timeout(30)
    drv.downloads = downloads
    os.makedirs(SHOTS, exist_ok=True)
    yield drv
    drv.quit()
    shutil.rmtree(downloads, ignore_errors=True)


def shot(drv, name):
    drv.save_screenshot(os.path.join(SHOTS, name + ".png"))


def find(drv, css, timeout=15):
    """The element once it is on the page (the screens render after their API calls)."""
    out = []

    def there():
        try:
            out[:] = drv.find_elements(By.CSS_SELECTOR, css)
        except WebDriverException:
            return False
        return bool(out)
    wait_for(there, timeout=timeout, what=css)
    return out[0]


def until(pred, timeout=15, what="condition"):
    """wait_for, where a page that re-rendered under the check (live screens) is a retry."""
    def safe():
        try:
            return pred()
        except WebDriverException:
            return False
    wait_for(safe, timeout=timeout, what=what)


def retype(drv, css, text):
    """Replaces what a field holds."""
    field = find(drv, css)
    field.clear()
    field.send_keys(text)


def go(drv, url, hash_):
    drv.get(f"{url}/console/#/{hash_}")


def sign_in(drv, url, key):
    drv.get(f"{url}/console/")
    find(drv, "#key").send_keys(key)
    find(drv, "#signin-go").click()
    find(drv, "#nav a")


def downloaded(drv, name):
    path = os.path.join(drv.downloads, name)
    wait_for(lambda: os.path.exists(path) and os.path.getsize(path) > 0, timeout=15,
             what=f"{name} downloaded")
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.daemon_args("--batch_rate=2000")  # a batch takes seconds: progress to watch
def test_console_screens(stack, browser):
    redis, d, api, db = stack
    drv = browser
    # --- sign-in: a wrong key shows the API's message, the key never reaches a URL
    drv.get(f"{d.url}/console/")
    find(drv, "#key").send_keys("rdk_wrong_0000000000000000000000")
    find(drv, "#signin-go").click()
    assert "API key" in find(drv, "#signin .error").text or find(drv, "#signin .error").text
    shot(drv, "01-signin")
    drv.refresh()
    find(drv, "#key").send_keys(api.key)
    find(drv, "#signin-go").click()
    find(drv, "#coupon-filters")
    assert api.key not in drv.current_url
    assert [a.text for a in drv.find_elements(By.CSS_SELECTOR, "#nav a")] == \
        ["Coupons", "Batches", "Vouchers", "Stats", "Transactions"]

    # --- create a coupon from the form
    find(drv, "#new-coupon").click()
    find(drv, "#n-code").send_keys("CONSOLE-1")
    retype(drv, "#n-value", "15")
    find(drv, "#n-total").send_keys("10")
    find(drv, "#n-per-user").send_keys("2")
    find(drv, "#n-campaign").send_keys("autumn")
    shot(drv, "02-new-coupon")
    find(drv, "#n-create").click()
    assert find(drv, "#coupon-code").text == "CONSOLE-1"
    until(lambda: "15 %" in find(drv, "#coupon-def").text, what="the definition")
    shot(drv, "04-coupon")
    # an error shows the API's message: the same code again
    go(drv, d.url, "new")
    find(drv, "#n-code").send_keys("CONSOLE-1")
    find(drv, "#n-create").click()
    assert "exists" in find(drv, "#new-coupon-form .error").text.lower()

    # --- an XSS probe: a campaign that is markup is shown as text, never run
    assert api.post("/v1/coupons", {"code": "CONSOLE-XSS", "campaign": XSS, "tags": [XSS],
                                    "discount": {"type": "percent", "value": 500},
                                    "metadata": {"note": XSS}}).status_code == 201
    go(drv, d.url, "coupon/CONSOLE-XSS")
    until(lambda: find(drv, "#coupon-campaign").text == XSS, what="the campaign as text")
    assert not drv.find_elements(By.CSS_SELECTOR, "#main img")
    assert drv.title == "redeemd console"

    # --- find it, redeem it through the API, see the row turn from yellow to green
    go(drv, d.url, "coupons")
    find(drv, "#f-prefix").send_keys("console")
    find(drv, "#search").click()

    def row_class(code):
        find(drv, "#refresh").click()
        rows = drv.find_elements(By.CSS_SELECTOR, f'#coupons tr[data-code="{code}"]')
        return rows[0].get_attribute("class") if rows else None
    until(lambda: row_class("CONSOLE-1") == "st-valid", timeout=30, what="a yellow row")
    xss_row = find(drv, '#coupons tr[data-code="CONSOLE-XSS"]')
    assert XSS in xss_row.text and not drv.find_elements(By.CSS_SELECTOR, "#coupons img")
    assert api.redeem("CONSOLE-1", user="u1").status_code == 201
    until(lambda: row_class("CONSOLE-1") == "st-used", timeout=30, what="a green row")
    shot(drv, "03-coupons")
    # export what the filters select
    find(drv, "#export").click()
    rows = downloaded(drv, "coupons.csv")
    assert {r["code"] for r in rows} == {"CONSOLE-1", "CONSOLE-XSS"}, rows

    # --- share: the message, copy, the WhatsApp link
    go(drv, d.url, "coupon/CONSOLE-1")
    find(drv, "#share-message").send_keys("Hello!")
    find(drv, "#share").click()
    assert "CONSOLE-1" in find(drv, "#share-text").text
    assert find(drv, "#whatsapp").get_attribute("href").startswith("https://wa.me/?text=Hello")
    find(drv, "#copy").click()
    until(lambda: find(drv, "#copy").text in ("Copied", "Select and copy"), what="copy")
    # live usage and disable
    until(lambda: find(drv, "#coupon-used").text == "1", timeout=15, what="used 1")
    find(drv, "#toggle").click()
    until(lambda: find(drv, "#coupon-status").text == "disabled", what="disabled")
    shot(drv, "05-share")
    find(drv, "#toggle").click()
    until(lambda: find(drv, "#coupon-status").text != "disabled", what="enabled again")
    # edit: the campaign and the total limit, then what is left of it
    retype(drv, "#edit-form input[name=campaign]", "autumn-edit")
    retype(drv, "#edit-form input[name=total]", "12")
    find(drv, "#save").click()
    until(lambda: find(drv, "#coupon-campaign").text == "autumn-edit", what="the edit shown")
    until(lambda: "11 of 12 left" in find(drv, "#coupon-usage").text, what="what is left")
    got = api.get("/v1/coupons/CONSOLE-1").json()
    assert got["campaign"] == "autumn-edit" and got["limits"]["total"] == 12, got
    # the listing's filters: campaign and status select it, a status it lacks does not
    go(drv, d.url, "coupons")
    find(drv, "#f-prefix").clear()
    find(drv, "#f-campaign").send_keys("autumn-edit")
    find(drv, '#f-status option[value="used"]').click()
    find(drv, "#search").click()
    until(lambda: [r.get_attribute("data-code") for r in
                   drv.find_elements(By.CSS_SELECTOR, "#coupons tbody tr")] == ["CONSOLE-1"],
          timeout=30, what="campaign and status select it alone")
    find(drv, '#f-status option[value="expired"]').click()
    find(drv, "#search").click()
    find(drv, "#no-coupons")
    find(drv, "#f-campaign").clear()
    find(drv, '#f-status option[value=""]').click()
    find(drv, "#search").click()

    # --- a batch: the format preview and the code space, a progress bar that finishes
    go(drv, d.url, "batches")
    retype(drv, "#b-count", "3000")
    find(drv, "#b-prefix").send_keys("CB-")
    retype(drv, "#b-length", "6")
    assert find(drv, "#b-sample").text.startswith("CB-") and len(find(drv, "#b-sample").text) == 9
    assert find(drv, "#b-space").text.startswith("31^6 = 887,503,681 codes")
    find(drv, "#b-campaign").send_keys("batch-camp")
    shot(drv, "06-batches")
    find(drv, "#b-create").click()
    find(drv, "#b-progress")
    until(lambda: find(drv, "#b-state").text == "done", timeout=60, what="the batch done")
    assert find(drv, "#b-progress").get_attribute("value") == "1"
    assert find(drv, "#b-created").text == "3000 of 3000"
    shot(drv, "07-batch")
    find(drv, "#b-download").click()
    bid = drv.current_url.rsplit("/", 1)[1]
    codes = downloaded(drv, f"{bid}.csv")
    assert len(codes) == 3000 and all(r["code"].startswith("CB-") for r in codes)

    # a big one, cancelled while it runs
    go(drv, d.url, "batches")
    retype(drv, "#b-count", "500000")
    retype(drv, "#b-length", "10")
    find(drv, "#b-create").click()
    find(drv, "#b-cancel").click()
    until(lambda: find(drv, "#b-state").text == "cancelled", timeout=30, what="cancelled")
    assert not drv.find_elements(By.CSS_SELECTOR, "#b-cancel")

    # --- paging through the coupons with the cursor
    for i in range(55):
        api.create(code=f"PAGE-{i:03d}")
    until(lambda: len(api.get("/v1/coupons?prefix=PAGE-&limit=100").json()["data"]) == 55,
          timeout=30, what="all 55 in the listing (the mirror follows the ledger)")
    go(drv, d.url, "coupons")
    retype(drv, "#f-prefix", "PAGE-")
    find(drv, "#search").click()

    def codes_shown():
        return [r.get_attribute("data-code") for r in
                drv.find_elements(By.CSS_SELECTOR, "#coupons tbody tr")]
    until(lambda: len(codes_shown()) == 50, what="a first page of 50")
    first = codes_shown()
    find(drv, "#next").click()
    until(lambda: len(codes_shown()) == 5, what="the second page")
    assert set(first) | set(codes_shown()) == {f"PAGE-{i:03d}" for i in range(55)}
    find(drv, "#prev").click()
    until(lambda: codes_shown() == first, what="back to the first page")

    # --- a voucher: balance, recharge, the payment history
    assert api.post("/v1/coupons", {"code": "CONSOLE-V", "kind": "voucher", "balance": 5000,
                                    "currency": "EUR"}).status_code == 201
    assert api.post("/v1/vouchers/CONSOLE-V/pay", {"amount": 1999, "currency": "EUR",
                                                   "user_id": "u1"},
                    headers={"Idempotency-Key": "console-pay-1"}).status_code == 201
    go(drv, d.url, "voucher/CONSOLE-V")
    assert find(drv, "#v-balance").text == "30.01 EUR"
    find(drv, "#v-amount").send_keys("10")
    find(drv, "#v-recharge").click()
    until(lambda: find(drv, "#v-balance").text == "40.01 EUR", what="recharged")

    def history():
        drv.refresh()
        return {r.find_elements(By.TAG_NAME, "td")[1].text
                for r in drv.find_elements(By.CSS_SELECTOR, "#voucher-history tbody tr")}
    until(lambda: history() == {"pay", "recharge"}, timeout=30, what="the history")
    shot(drv, "08-voucher")

    # --- stats: SVG charts drawn by the page
    assert api.redeem("CONSOLE-1", user="u2", currency="USD").status_code == 422

    def stats_show():
        go(drv, d.url, "stats")
        drv.refresh()
        return ("currency_mismatch" in find(drv, "#chart-reasons").text
                and "CONSOLE-1" in find(drv, "#chart-top").text)
    until(stats_show, timeout=30, what="the rejection and the top coupon in the charts")
    assert len(drv.find_elements(By.CSS_SELECTOR, "#chart-hours rect")) == 96  # 48 h x 2
    assert "40.01" in find(drv, "#chart-money").text  # outstanding
    assert "active" in find(drv, "#chart-status").text
    shot(drv, "09-stats")

    # --- transactions: filters, paging, CSV
    go(drv, d.url, "transactions")
    find(drv, "#t-code").send_keys("CONSOLE-1")
    find(drv, "#t-search").click()
    until(lambda: any(r.find_elements(By.TAG_NAME, "td")[1].text == "redeem"
                         for r in drv.find_elements(By.CSS_SELECTOR, "#transactions tbody tr")),
             timeout=30, what="the redemption in the ledger")
    shot(drv, "10-transactions")
    find(drv, "#t-export").click()
    rows = downloaded(drv, "transactions.csv")
    assert {r["code"] for r in rows} == {"CONSOLE-1"} and "redeem" in {r["kind"] for r in rows}

    # nothing the page did broke its Content-Security-Policy or threw
    logs = [e for e in drv.get_log("browser") if e["level"] == "SEVERE" and (
            "Content Security Policy" in e["message"] or "Uncaught" in e["message"])]
    assert not logs, logs


def test_console_follows_the_keys_scopes(stack, browser):
    redis, d, api, db = stack
    redeem = make_key(redis.port, "redeem", "console redeem")
    fraud = make_key(redis.port, "fraud", "console fraud")
    for k in (redeem, fraud):
        until(lambda: key_loaded(d.url, k, path="/v1/me", ok=(200,)), what="key loaded")
    sign_in(browser, d.url, redeem)
    assert [a.text for a in browser.find_elements(By.CSS_SELECTOR, "#nav a")] == ["Vouchers"]
    find(browser, "#voucher-find")
    shot(browser, "11-redeem-scope")
    find(browser, "#signout").click()
    find(browser, "#key").send_keys(fraud)
    find(browser, "#signin-go").click()
    find(browser, "#coupon-filters")
    assert [a.text for a in browser.find_elements(By.CSS_SELECTOR, "#nav a")] == \
        ["Coupons", "Batches", "Vouchers", "Stats", "Transactions"]
    assert not browser.find_elements(By.CSS_SELECTOR, "#new-coupon")  # admin only
    # the API decides, not the page: the fraud key cannot create even by hand
    r = Api(d.url, fraud).post("/v1/coupons", {"code": "NOPE"})
    assert r.status_code == 403


def test_console_is_served_with_a_strict_policy(stack):
    import requests
    redis, d, api, db = stack
    r = requests.get(f"{d.url}/console/", timeout=10)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/html")
    csp = r.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "default-src 'none'" in csp
    assert "<script>" not in r.text and " style=" not in r.text  # no inline script or style
    assert requests.get(f"{d.url}/console/console.js", timeout=10).headers[
        "Content-Type"].startswith("text/javascript")
    for bad in ("/console/nope.js", "/console/..%2fetc%2fpasswd", "/console/a/b",
                "/console/openapi.json"):
        r = requests.get(d.url + bad, timeout=10)
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", bad
    r = requests.get(f"{d.url}/console", allow_redirects=False, timeout=10)
    assert r.status_code == 308 and r.headers["Location"] == "/console/"
    js = requests.get(f"{d.url}/console/console.js", timeout=10).text
    assert "innerHTML" not in js.replace("There is no innerHTML", "")
    assert api.get("/v1/me").json()["scopes"] == ["admin", "redeem", "fraud"]
    assert requests.get(f"{d.url}/v1/me", timeout=10).status_code == 401
