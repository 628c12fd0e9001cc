/* redeemd console: a single page on the API, served by redeemd itself (daemon/api/console.c).
 *
 * Rules this file keeps:
 * - The API key lives in sessionStorage (this tab only) and travels only in the
 *   Authorization header, never in a URL.
 * - Everything from the API or typed by a user is put on the page as text (textContent,
 *   attribute values, SVG text nodes): never as HTML. There is no innerHTML in this file.
 * - No inline script or style (the page's Content-Security-Policy forbids both).
 * - What shows follows the key's scopes (GET /v1/me); the API checks every call anyway.
 */
"use strict";

const KEY = "redeemd.key";
let me = null; /* {key_id, scopes} */
let timer = null; /* the current screen's refresh, stopped when the screen changes */

/* ---- DOM ------------------------------------------------------------------------------- */

/* h("tag.class", {attr: v, on: {click: f}}, child...): children are nodes or text */
function h(spec, props, ...children) {
  const [tag, ...classes] = spec.split(".");
  const el = document.createElement(tag);
  if (classes.length) el.className = classes.join(" ");
  for (const [k, v] of Object.entries(props || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "on") for (const [ev, f] of Object.entries(v)) el.addEventListener(ev, f);
    else if (k === "value") el.value = v;
    else if (k === "checked") el.checked = !!v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  add(el, children);
  return el;
}
function add(el, children) {
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}
const SVGNS = "http://www.w3.org/2000/svg";
function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  for (const c of children.flat())
    el.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}
function main(...children) {
  const m = document.getElementById("main");
  m.replaceChildren();
  add(m, children);
  return m;
}
function field(label, input) { return h("label", {}, label, input); }
function errorBox(e) { return h("div.error", { role: "alert" }, e.message || String(e)); }
function showError(where, e) {
  where.querySelectorAll(":scope > .error").forEach((x) => x.remove());
  where.prepend(errorBox(e));
}
function val(form, name) { /* (never name a field "length": form.elements.length is a count) */
  const el = form.elements.namedItem(name);
  return el ? el.value.trim() : "";
}

/* ---- the API --------------------------------------------------------------------------- */

class ApiError extends Error {
  constructor(status, body) {
    const e = (body && body.error) || {};
    super(e.message || `HTTP ${status}`);
    this.status = status;
    this.code = e.code;
    this.details = e.details;
  }
}

async function api(method, path, body, extra) {
  const headers = { Authorization: "Bearer " + sessionStorage.getItem(KEY) };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  Object.assign(headers, extra || {});
  const r = await fetch(path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    cache: "no-store", credentials: "omit", redirect: "error",
  });
  const text = await r.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch (_) { json = null; }
  if (!r.ok) {
    if (r.status === 401 && me) signOut(); /* the key was revoked meanwhile */
    throw new ApiError(r.status, json);
  }
  return json;
}

/* Fetches a CSV export with the key in its header and hands it to the browser as a file. */
async function download(path, filename) {
  const r = await fetch(path, {
    headers: { Authorization: "Bearer " + sessionStorage.getItem(KEY), Accept: "text/csv" },
    cache: "no-store", credentials: "omit",
  });
  if (!r.ok) {
    let json = null;
    try { json = await r.json(); } catch (_) { json = null; }
    throw new ApiError(r.status, json);
  }
  const blob = await r.blob();
  const url = URL.createObjectURL(blob);
  const a = h("a", { href: url, download: filename });
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
  return blob.size;
}

function qs(params) {
  const u = new URLSearchParams();
  for (const [k, v] of Object.entries(params))
    for (const x of [].concat(v)) if (x !== "" && x !== null && x !== undefined) u.append(k, x);
  const t = u.toString();
  return t ? "?" + t : "";
}
const enc = encodeURIComponent;
function idem() {
  return crypto.randomUUID ? crypto.randomUUID()
    : Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16)).join("");
}
function has(scope) { return me && me.scopes.includes(scope); }

/* ---- formatting ------------------------------------------------------------------------ */

function money(minor, currency) {
  if (minor === null || minor === undefined) return "";
  return (minor / 100).toFixed(2) + (currency ? " " + currency : "");
}
function when(t) { return t ? t.replace("T", " ").replace(/\.\d+Z$|Z$/, " UTC") : ""; }
function discountText(d, currency) {
  if (!d) return "";
  const v = d.type === "percent" ? d.value / 100 + " %" : money(d.value, currency);
  const extra = [];
  if (d.max_amount) extra.push("at most " + money(d.max_amount, currency));
  if (d.min_order) extra.push("orders from " + money(d.min_order, currency));
  return v + (extra.length ? " (" + extra.join(", ") + ")" : "");
}
/* the row colour: green used, yellow valid, pink expired, ... */
function colour(c) {
  if (c.status === "expired") return "st-expired";
  if (c.status === "disabled" || c.status === "archived") return "st-disabled";
  if (c.status === "exhausted") return "st-exhausted";
  if (c.status === "scheduled") return "st-scheduled";
  const used = typeof c.used === "object" && c.used ? c.used.total : c.used;
  return used > 0 ? "st-used" : "st-valid";
}
function dayStart(d) { return d ? d + "T00:00:00Z" : ""; }
function dayEnd(d) { return d ? d + "T23:59:59.999Z" : ""; }

/* ---- frame: navigation, sign-in --------------------------------------------------------- */

const SCREENS = [
  ["coupons", "Coupons", () => has("admin") || has("fraud")],
  ["batches", "Batches", () => has("admin") || has("fraud")],
  ["vouchers", "Vouchers", () => true],
  ["stats", "Stats", () => has("admin") || has("fraud")],
  ["transactions", "Transactions", () => has("fraud")],
];

function frame(active) {
  const nav = document.getElementById("nav");
  nav.replaceChildren();
  for (const [id, label, ok] of SCREENS)
    if (me && ok()) nav.appendChild(h("a" + (id === active ? ".on" : ""), { href: "#/" + id, id: "nav-" + id }, label));
  document.getElementById("who").textContent =
    me ? `key ${me.key_id} · ${me.scopes.join(", ")}` : "";
  document.getElementById("signout").hidden = !me;
}

function signOut() {
  sessionStorage.removeItem(KEY);
  me = null;
  if (location.hash !== "#/signin") location.hash = "#/signin";
  else route();
}

function signIn() {
  frame(null);
  const form = h("form.panel.signin", { id: "signin", autocomplete: "off" },
    h("h2", {}, "Sign in"),
    h("p.muted", {}, "An API key (rdk_…). It is kept for this tab only."),
    field("API key", h("input", { type: "password", name: "key", id: "key", required: true,
                                  autocomplete: "off", spellcheck: "false" })),
    h("p", {}, h("button", { type: "submit", id: "signin-go" }, "Sign in")));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    sessionStorage.setItem(KEY, val(form, "key"));
    try {
      me = await api("GET", "/v1/me");
      location.hash = "#/" + (SCREENS.find((x) => x[2]())[0]);
    } catch (e) {
      sessionStorage.removeItem(KEY);
      showError(form, e);
    }
  });
  main(form);
}

/* ---- coupons ---------------------------------------------------------------------------- */

const couponState = { filters: {}, cursors: [null] };

function couponFilters() {
  const f = couponState.filters;
  const sel = (name, opts) => h("select", { name, id: "f-" + name },
    opts.map((o) => h("option", { value: o, selected: (f[name] || "") === o }, o || "any")));
  const form = h("form.filters.panel", { id: "coupon-filters" },
    field("Code starts with", h("input", { name: "prefix", id: "f-prefix", value: f.prefix || "" })),
    field("Status", sel("status", ["", "active", "scheduled", "exhausted", "expired", "disabled", "used", "unused"])),
    field("Kind", sel("kind", ["", "discount", "voucher"])),
    field("Campaign", h("input", { name: "campaign", id: "f-campaign", value: f.campaign || "" })),
    field("Tag", h("input", { name: "tag", id: "f-tag", value: f.tag || "" })),
    field("Created from", h("input", { type: "date", name: "created_from", value: f.created_from || "" })),
    field("Created to", h("input", { type: "date", name: "created_to", value: f.created_to || "" })),
    field("Expires from", h("input", { type: "date", name: "expires_from", value: f.expires_from || "" })),
    field("Expires to", h("input", { type: "date", name: "expires_to", value: f.expires_to || "" })),
    h("button", { type: "submit", id: "search" }, "Search"),
    h("button.secondary", { type: "button", id: "export", on: { click: exportCoupons } }, "Export CSV"),
    has("admin") ? h("a.button.secondary", { href: "#/new", id: "new-coupon" }, "New coupon") : null);
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    for (const k of ["prefix", "status", "kind", "campaign", "tag", "created_from", "created_to",
                     "expires_from", "expires_to"]) f[k] = val(form, k);
    couponState.cursors = [null];
    coupons();
  });
  return form;
}
function couponQuery() {
  const f = couponState.filters;
  return {
    prefix: (f.prefix || "").toUpperCase(), status: f.status, kind: f.kind, campaign: f.campaign,
    tag: f.tag, created_from: dayStart(f.created_from), created_to: dayEnd(f.created_to),
    expires_from: dayStart(f.expires_from), expires_to: dayEnd(f.expires_to),
  };
}
async function exportCoupons() {
  const out = document.getElementById("coupon-list");
  try {
    const n = await download("/v1/coupons" + qs(couponQuery()), "coupons.csv");
    out.prepend(h("div.note", { id: "export-done" }, `coupons.csv downloaded (${n} bytes)`));
  } catch (e) { showError(out, e); }
}

async function coupons() {
  frame("coupons");
  const list = h("div", { id: "coupon-list" }, h("p.muted", {}, "Loading…"));
  main(h("h2", {}, "Coupons"), couponFilters(), list);
  const cursor = couponState.cursors[couponState.cursors.length - 1];
  const load = async () => {
    let page;
    try {
      page = await api("GET", "/v1/coupons" + qs({ ...couponQuery(), limit: 50, cursor }));
    } catch (e) { list.replaceChildren(errorBox(e)); return; }
    const rows = page.data.map((c) => h("tr." + colour(c), { "data-code": c.code },
      h("td", {}, h("a", { href: "#/coupon/" + enc(c.code) }, c.code)),
      h("td", {}, c.kind),
      h("td", {}, h("span.badge." + colour(c), {}, c.status)),
      h("td.num", {}, c.used),
      h("td.num", {}, c.kind === "voucher" ? money(c.balance, c.currency) : ""),
      h("td", {}, c.campaign || ""),
      h("td", {}, (c.tags || []).join(", ")),
      h("td", {}, when(c.expires_at)),
      h("td", {}, when(c.created_at))));
    const pager = h("div.pager", {},
      h("button.secondary", { type: "button", id: "prev", disabled: couponState.cursors.length < 2,
        on: { click: () => { couponState.cursors.pop(); coupons(); } } }, "Previous"),
      h("button.secondary", { type: "button", id: "next", disabled: !page.has_more,
        on: { click: () => { couponState.cursors.push(page.next_cursor); coupons(); } } }, "Next"),
      h("span.muted", {}, `page ${couponState.cursors.length}`),
      h("button.secondary", { type: "button", id: "refresh", on: { click: load } }, "Refresh"));
    list.replaceChildren(
      page.data.length ? h("table", { id: "coupons" },
        h("thead", {}, h("tr", {}, ["Code", "Kind", "Status", "Used", "Balance", "Campaign", "Tags",
          "Expires", "Created"].map((t) => h("th", {}, t)))),
        h("tbody", {}, rows)) : h("p.muted", { id: "no-coupons" }, "No coupon matches."),
      pager);
  };
  await load();
}

function newCoupon() {
  frame("coupons");
  const form = h("form.panel", { id: "new-coupon-form" },
    h("div.row", {},
      field("Kind", h("select", { name: "kind", id: "n-kind" },
        h("option", { value: "discount" }, "discount coupon"), h("option", { value: "voucher" }, "voucher (stored value)"))),
      field("Code (empty: generated)", h("input", { name: "code", id: "n-code" })),
      field("Currency", h("input", { name: "currency", id: "n-currency", value: "EUR", size: 4 }))),
    h("h3", {}, "Discount (coupons)"),
    h("div.row", {},
      field("Type", h("select", { name: "dtype", id: "n-dtype" },
        h("option", { value: "percent" }, "percent"), h("option", { value: "fixed" }, "fixed amount"))),
      field("Value (% or amount)", h("input", { name: "value", id: "n-value", value: "10", inputmode: "decimal" })),
      field("At most (amount)", h("input", { name: "max_amount", inputmode: "decimal" })),
      field("Minimum order (amount)", h("input", { name: "min_order", inputmode: "decimal" }))),
    h("h3", {}, "Limits"),
    h("div.row", {},
      field("Total uses", h("input", { name: "total", id: "n-total", inputmode: "numeric" })),
      field("Per user", h("input", { name: "per_user", id: "n-per-user", inputmode: "numeric" })),
      field("Per user per day", h("input", { name: "per_user_daily", inputmode: "numeric" })),
      field("Per user per week", h("input", { name: "per_user_weekly", inputmode: "numeric" }))),
    h("h3", {}, "Voucher"),
    h("div.row", {}, field("Balance (amount)", h("input", { name: "balance", id: "n-balance", inputmode: "decimal" }))),
    h("h3", {}, "Other"),
    h("div.row", {},
      field("Expires in days", h("input", { name: "expires_in_days", id: "n-expires", inputmode: "numeric" })),
      field("Campaign", h("input", { name: "campaign", id: "n-campaign" })),
      field("Tags (comma-separated)", h("input", { name: "tags", id: "n-tags" }))),
    h("p", {}, h("button", { type: "submit", id: "n-create" }, "Create")));
  const amount = (v) => (v === "" ? undefined : Math.round(parseFloat(v) * 100));
  const int = (v) => (v === "" ? undefined : parseInt(v, 10));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const kind = val(form, "kind");
    const body = { kind, currency: val(form, "currency") || undefined };
    if (val(form, "code")) body.code = val(form, "code");
    if (kind === "voucher") {
      body.balance = amount(val(form, "balance"));
    } else {
      const t = val(form, "dtype");
      body.discount = { type: t, value: t === "percent" ? Math.round(parseFloat(val(form, "value")) * 100) : amount(val(form, "value")) };
      if (val(form, "max_amount")) body.discount.max_amount = amount(val(form, "max_amount"));
      if (val(form, "min_order")) body.discount.min_order = amount(val(form, "min_order"));
      const limits = {};
      for (const k of ["total", "per_user", "per_user_daily", "per_user_weekly"])
        if (val(form, k)) limits[k] = int(val(form, k));
      if (Object.keys(limits).length) body.limits = limits;
    }
    if (val(form, "expires_in_days")) body.expires_in_days = int(val(form, "expires_in_days"));
    if (val(form, "campaign")) body.campaign = val(form, "campaign");
    if (val(form, "tags")) body.tags = val(form, "tags").split(",").map((x) => x.trim()).filter(Boolean);
    try {
      const c = await api("POST", "/v1/coupons", body);
      location.hash = "#/coupon/" + enc(c.code);
    } catch (e) { showError(form, e); }
  });
  main(h("h2", {}, "New coupon or voucher"), form);
}

async function coupon(code) {
  frame("coupons");
  const box = h("div", { id: "coupon-page" }, h("p.muted", {}, "Loading…"));
  main(h("h2", {}, "Coupon ", h("span", { id: "coupon-code" }, code)), box);
  const render = async () => {
    let c;
    try { c = await api("GET", "/v1/coupons/" + enc(code)); } catch (e) { box.replaceChildren(errorBox(e)); return; }
    const L = c.limits || {}, used = (c.used && c.used.total) || 0;
    const left = (lim, rem) => (lim === null || lim === undefined ? "no limit" : `${rem} of ${lim} left`);
    const def = h("dl.kv", { id: "coupon-def" },
      h("dt", {}, "Status"), h("dd", {}, h("span.badge." + colour(c), { id: "coupon-status" }, c.status)),
      h("dt", {}, "Kind"), h("dd", {}, c.kind),
      c.kind === "discount" ? [h("dt", {}, "Discount"), h("dd", {}, discountText(c.discount, c.currency))] : null,
      h("dt", {}, "Currency"), h("dd", {}, c.currency || ""),
      h("dt", {}, "Starts"), h("dd", {}, when(c.starts_at) || "now"),
      h("dt", {}, "Expires"), h("dd", {}, when(c.expires_at) || "never"),
      h("dt", {}, "Campaign"), h("dd", { id: "coupon-campaign" }, c.campaign || ""),
      h("dt", {}, "Tags"), h("dd", {}, (c.tags || []).join(", ")),
      h("dt", {}, "Metadata"), h("dd", {}, JSON.stringify(c.metadata || {})),
      h("dt", {}, "Shared"), h("dd", {}, `${c.shares || 0} times` + (c.shared_at ? ", last " + when(c.shared_at) : "")),
      c.batch ? [h("dt", {}, "Batch"), h("dd", {}, h("a", { href: "#/batch/" + enc(c.batch) }, c.batch))] : null,
      h("dt", {}, "Created"), h("dd", {}, when(c.created_at)));
    const usage = h("dl.kv", { id: "coupon-usage" },
      h("dt", {}, "Used"), h("dd", { id: "coupon-used" }, String(used)),
      h("dt", {}, "Total"), h("dd", {}, left(L.total, c.remaining ? c.remaining.total : "")),
      h("dt", {}, "Per user"), h("dd", {}, L.per_user ? `${L.per_user} per user` : "no limit"),
      h("dt", {}, "Per user per day"), h("dd", {}, L.per_user_daily ? `${L.per_user_daily}` : "no limit"),
      h("dt", {}, "Per user per week"), h("dd", {}, L.per_user_weekly ? `${L.per_user_weekly}` : "no limit"));
    const parts = [h("div.grid2", {}, h("div.panel", {}, h("h3", {}, "Definition"), def),
                                       h("div.panel", {}, h("h3", {}, "Usage (live)"), usage))];
    if (c.kind === "voucher") parts.push(h("p", {}, h("a.button.secondary", { href: "#/voucher/" + enc(c.code) }, "Balance and payments")));
    if (has("admin")) parts.push(couponActions(c, render));
    box.replaceChildren(...parts);
  };
  await render();
  timer = setInterval(() => { if (!document.querySelector("#coupon-page form :focus")) render(); }, 5000);
}

function couponActions(c, rerender) {
  const L = c.limits || {};
  const panel = h("div.panel", { id: "coupon-actions" });
  const toggle = h("button" + (c.status === "disabled" ? "" : ".danger"), { type: "button", id: "toggle" },
    c.status === "disabled" ? "Enable" : "Disable");
  toggle.addEventListener("click", async () => {
    try {
      await api("POST", `/v1/coupons/${enc(c.code)}/${c.status === "disabled" ? "enable" : "disable"}`, {});
      await rerender();
    } catch (e) { showError(panel, e); }
  });
  const edit = h("form.row", { id: "edit-form" },
    field("Campaign", h("input", { name: "campaign", value: c.campaign || "" })),
    field("Tags", h("input", { name: "tags", value: (c.tags || []).join(", ") })),
    field("Expires (UTC)", h("input", { name: "expires_at", value: c.expires_at || "", placeholder: "2030-01-31T00:00:00Z" })),
    c.kind === "discount" ? field("Total uses", h("input", { name: "total", value: L.total ?? "" })) : null,
    c.kind === "discount" ? field("Per user", h("input", { name: "per_user", value: L.per_user ?? "" })) : null,
    h("button", { type: "submit", id: "save" }, "Save"));
  edit.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const body = {
      campaign: val(edit, "campaign") || null,
      tags: val(edit, "tags").split(",").map((x) => x.trim()).filter(Boolean),
      expires_at: val(edit, "expires_at") || null,
    };
    if (c.kind === "discount") {
      const n = (k) => (val(edit, k) === "" ? null : parseInt(val(edit, k), 10));
      body.limits = { total: n("total"), per_user: n("per_user") };
    }
    try { await api("PATCH", "/v1/coupons/" + enc(c.code), body); await rerender(); } catch (e) { showError(panel, e); }
  });
  const shareOut = h("div", { id: "share-out" });
  const share = h("form.row", { id: "share-form" },
    field("Recipient (optional)", h("input", { name: "recipient", id: "share-recipient" })),
    field("Intro (optional)", h("input", { name: "message", id: "share-message", size: 40 })),
    h("button", { type: "submit", id: "share" }, "Share"));
  share.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const body = { channel: "whatsapp" };
    if (val(share, "recipient")) body.recipient = val(share, "recipient");
    if (val(share, "message")) body.message = val(share, "message");
    try {
      const r = await api("POST", `/v1/coupons/${enc(c.code)}/share`, body);
      const pre = h("pre.message", { id: "share-text" }, r.message);
      const copy = h("button.secondary", { type: "button", id: "copy" }, "Copy");
      copy.addEventListener("click", async () => {
        try { await navigator.clipboard.writeText(r.message); copy.textContent = "Copied"; } catch (_) {
          const range = document.createRange();
          range.selectNodeContents(pre);
          getSelection().removeAllRanges();
          getSelection().addRange(range);
          copy.textContent = document.execCommand("copy") ? "Copied" : "Select and copy";
        }
      });
      const link = /^https:\/\/wa\.me\//.test(r.whatsapp_url)
        ? h("a.button", { href: r.whatsapp_url, target: "_blank", rel: "noopener noreferrer", id: "whatsapp" }, "Open in WhatsApp") : null;
      shareOut.replaceChildren(pre, h("div.row", {}, copy, link));
    } catch (e) { showError(panel, e); }
  });
  add(panel, [h("h3", {}, "Edit"), edit, h("h3", {}, "Share"), share, shareOut,
              h("h3", {}, "Availability"), toggle]);
  return panel;
}

/* ---- batches ---------------------------------------------------------------------------- */

const ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"; /* the API's default: no look-alikes */

function batchFormat(form) {
  const fmt = { prefix: val(form, "prefix") };
  const pattern = val(form, "pattern");
  if (pattern) fmt.pattern = pattern; else fmt.length = parseInt(val(form, "len") || "0", 10);
  if (val(form, "alphabet")) fmt.alphabet = val(form, "alphabet");
  fmt.check = form.elements.check.checked;
  return fmt;
}
function formatPreview(fmt) {
  const alpha = fmt.alphabet || ALPHABET;
  const pattern = fmt.pattern || "#".repeat(fmt.length || 0);
  const slots = (pattern.match(/#/g) || []).length;
  const rnd = () => alpha[crypto.getRandomValues(new Uint32Array(1))[0] % alpha.length];
  const sample = (fmt.prefix || "") + pattern.replace(/#/g, rnd) + (fmt.check ? rnd() : "");
  const space = BigInt(alpha.length) ** BigInt(slots);
  return { sample, space, text: `${alpha.length}^${slots} = ${space.toLocaleString("en-US")} codes` };
}

async function batches() {
  frame("batches");
  const list = h("div", { id: "batch-list" }, h("p.muted", {}, "Loading…"));
  const parts = [h("h2", {}, "Batches")];
  if (has("admin")) parts.push(batchForm());
  parts.push(list);
  main(...parts);
  const load = async () => {
    let page;
    try { page = await api("GET", "/v1/batches"); } catch (e) { list.replaceChildren(errorBox(e)); return; }
    list.replaceChildren(page.data.length ? h("table", { id: "batches" },
      h("thead", {}, h("tr", {}, ["Job", "State", "Codes", "Progress", "Format", "Campaign", "Created"].map((t) => h("th", {}, t)))),
      h("tbody", {}, page.data.map((b) => h("tr", { "data-id": b.id },
        h("td", {}, h("a", { href: "#/batch/" + enc(b.id) }, b.id)),
        h("td", {}, b.state),
        h("td.num", {}, `${b.created} / ${b.requested}`),
        h("td", {}, h("progress", { max: 1, value: b.progress || 0 })),
        h("td", {}, (b.format.prefix || "") + b.format.pattern),
        h("td", {}, b.campaign || ""),
        h("td", {}, when(b.created_at)))))) : h("p.muted", {}, "No batch yet."));
  };
  await load();
  timer = setInterval(load, 2000);
}

function batchForm() {
  const preview = h("div.preview", { id: "batch-preview" });
  const form = h("form.panel", { id: "batch-form" },
    h("h3", {}, "New batch"),
    h("div.row", {},
      field("How many codes", h("input", { name: "count", id: "b-count", value: "1000", inputmode: "numeric" })),
      field("Prefix", h("input", { name: "prefix", id: "b-prefix", value: "" })),
      field("Length", h("input", { name: "len", id: "b-length", value: "8", inputmode: "numeric", size: 4 })),
      field("or pattern (# = symbol)", h("input", { name: "pattern", id: "b-pattern", placeholder: "####-####" })),
      field("Alphabet", h("input", { name: "alphabet", id: "b-alphabet", placeholder: ALPHABET })),
      field("Check symbol", h("input", { type: "checkbox", name: "check" }))),
    h("div.row", {},
      field("Discount %", h("input", { name: "percent", id: "b-percent", value: "10", inputmode: "decimal" })),
      field("Uses per code", h("input", { name: "total", id: "b-total", value: "1", inputmode: "numeric" })),
      field("Expires in days", h("input", { name: "expires_in_days", id: "b-expires", inputmode: "numeric" })),
      field("Campaign", h("input", { name: "campaign", id: "b-campaign" })),
      field("Tags", h("input", { name: "tags", id: "b-tags" }))),
    h("p", {}, "Preview: ", preview),
    h("p", {}, h("button", { type: "submit", id: "b-create" }, "Create batch")));
  const update = () => {
    const p = formatPreview(batchFormat(form));
    const count = BigInt(parseInt(val(form, "count") || "0", 10) || 0);
    preview.replaceChildren(h("span", { id: "b-sample" }, p.sample), "  ·  ",
      h("span", { id: "b-space" }, p.text),
      count * 2n > p.space ? h("span.error", {}, " more than half of the space: too small") : null);
  };
  form.addEventListener("input", update);
  update();
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const template = { discount: { type: "percent", value: Math.round(parseFloat(val(form, "percent")) * 100) },
                       limits: { total: parseInt(val(form, "total"), 10) } };
    if (val(form, "expires_in_days")) template.expires_in_days = parseInt(val(form, "expires_in_days"), 10);
    if (val(form, "campaign")) template.campaign = val(form, "campaign");
    if (val(form, "tags")) template.tags = val(form, "tags").split(",").map((x) => x.trim()).filter(Boolean);
    try {
      const b = await api("POST", "/v1/batches", { count: parseInt(val(form, "count"), 10), format: batchFormat(form), template },
                          { "Idempotency-Key": idem() });
      location.hash = "#/batch/" + enc(b.id);
    } catch (e) { showError(form, e); }
  });
  return form;
}

async function batch(id) {
  frame("batches");
  const box = h("div.panel", { id: "batch-page" }, h("p.muted", {}, "Loading…"));
  main(h("h2", {}, "Batch ", id), box);
  const render = async () => {
    let b;
    try { b = await api("GET", "/v1/batches/" + enc(id)); } catch (e) { box.replaceChildren(errorBox(e)); return; }
    const running = b.state === "queued" || b.state === "running";
    const cancel = has("admin") && running ? h("button.danger", { type: "button", id: "b-cancel" }, "Cancel") : null;
    if (cancel) cancel.addEventListener("click", async () => {
      try { await api("POST", `/v1/batches/${enc(id)}/cancel`, {}); await render(); } catch (e) { showError(box, e); }
    });
    const dl = has("admin") && b.created > 0 ? h("button.secondary", { type: "button", id: "b-download" }, "Download codes (CSV)") : null;
    if (dl) dl.addEventListener("click", async () => {
      try {
        const n = await download(`/v1/batches/${enc(id)}/codes`, `${id}.csv`);
        box.prepend(h("div.note", { id: "b-downloaded" }, `${id}.csv downloaded (${n} bytes)`));
      } catch (e) { showError(box, e); }
    });
    box.replaceChildren(
      h("p", {}, h("progress", { id: "b-progress", max: 1, value: b.progress || 0 }), " ",
        h("span", { id: "b-state" }, b.state), " · ", h("span", { id: "b-created" }, `${b.created} of ${b.requested}`),
        b.codes_per_second ? ` · ${b.codes_per_second} codes/s` : ""),
      b.error ? errorBox(new Error(b.error)) : null,
      h("dl.kv", {},
        h("dt", {}, "Format"), h("dd", {}, (b.format.prefix || "") + b.format.pattern + (b.format.check ? " + check" : "")),
        h("dt", {}, "Alphabet"), h("dd", {}, b.format.alphabet),
        h("dt", {}, "Code space"), h("dd", {}, Number(b.space).toLocaleString("en-US")),
        h("dt", {}, "Template"), h("dd", {}, JSON.stringify(b.template)),
        h("dt", {}, "Created"), h("dd", {}, when(b.created_at)),
        h("dt", {}, "Finished"), h("dd", {}, when(b.finished_at))),
      h("div.row", {}, cancel, dl));
    if (!running && timer) { clearInterval(timer); timer = null; }
  };
  await render();
  timer = setInterval(render, 500);
}

/* ---- vouchers ---------------------------------------------------------------------------- */

async function vouchers() {
  frame("vouchers");
  const form = h("form.filters.panel", { id: "voucher-find" },
    field("Voucher code", h("input", { name: "code", id: "v-code", required: true })),
    h("button", { type: "submit", id: "v-open" }, "Open"));
  form.addEventListener("submit", (ev) => { ev.preventDefault(); location.hash = "#/voucher/" + enc(val(form, "code")); });
  const list = h("div", { id: "voucher-list" });
  main(h("h2", {}, "Vouchers"), form, list);
  if (!(has("admin") || has("fraud"))) return;
  try {
    const page = await api("GET", "/v1/coupons" + qs({ kind: "voucher", limit: 50 }));
    list.replaceChildren(page.data.length ? h("table", {},
      h("thead", {}, h("tr", {}, ["Voucher", "Status", "Balance", "Campaign", "Expires"].map((t) => h("th", {}, t)))),
      h("tbody", {}, page.data.map((c) => h("tr." + colour(c), {},
        h("td", {}, h("a", { href: "#/voucher/" + enc(c.code) }, c.code)), h("td", {}, c.status),
        h("td.num", {}, money(c.balance, c.currency)), h("td", {}, c.campaign || ""), h("td", {}, when(c.expires_at))))))
      : h("p.muted", {}, "No voucher yet."));
  } catch (e) { list.replaceChildren(errorBox(e)); }
}

async function voucher(code) {
  frame("vouchers");
  const box = h("div", { id: "voucher-page" }, h("p.muted", {}, "Loading…"));
  main(h("h2", {}, "Voucher ", code), box);
  const render = async () => {
    let v;
    try { v = await api("GET", `/v1/vouchers/${enc(code)}/balance`); } catch (e) { box.replaceChildren(errorBox(e)); return; }
    const parts = [h("div.panel", {}, h("dl.kv", { id: "voucher-balance" },
      h("dt", {}, "Balance"), h("dd", { id: "v-balance" }, money(v.balance, v.currency)),
      h("dt", {}, "Status"), h("dd", {}, v.status),
      h("dt", {}, "Loaded"), h("dd", {}, money(v.loaded, v.currency)),
      h("dt", {}, "Spent"), h("dd", {}, money(v.spent, v.currency)),
      h("dt", {}, "Refunded"), h("dd", {}, money(v.refunded, v.currency)),
      h("dt", {}, "Outstanding"), h("dd", {}, money(v.outstanding, v.currency)),
      h("dt", {}, "Expires"), h("dd", {}, when(v.expires_at) || "never")))];
    if (has("admin")) {
      const form = h("form.row.panel", { id: "recharge-form" },
        field("Recharge (amount)", h("input", { name: "amount", id: "v-amount", inputmode: "decimal" })),
        h("button", { type: "submit", id: "v-recharge" }, "Recharge"));
      form.addEventListener("submit", async (ev) => {
        ev.preventDefault();
        try {
          await api("POST", `/v1/vouchers/${enc(code)}/recharge`,
                    { amount: Math.round(parseFloat(val(form, "amount")) * 100) }, { "Idempotency-Key": idem() });
          await render();
        } catch (e) { showError(form, e); }
      });
      parts.push(form);
    }
    const hist = h("div.panel", { id: "voucher-history" }, h("h3", {}, "Payments, refunds and recharges"));
    parts.push(hist);
    box.replaceChildren(...parts);
    if (!has("fraud")) { add(hist, [h("p.muted", {}, "The history needs a key with the fraud scope.")]); return; }
    try {
      const t = await api("GET", "/v1/transactions" + qs({ code: v.code, kind: ["pay", "refund", "recharge"], limit: 100 }));
      add(hist, [t.data.length ? txTable(t.data) : h("p.muted", {}, "Nothing yet (the ledger may be a moment behind).")]);
    } catch (e) { add(hist, [errorBox(e)]); }
  };
  await render();
}

/* ---- stats: SVG drawn here ------------------------------------------------------------- */

function barsOverTime(hours) {
  const W = 960, H = 220, pad = 30, n = hours.length || 1, bw = (W - pad) / n;
  const max = Math.max(1, ...hours.map((x) => x.redemptions + x.rejected));
  const g = s("svg", { class: "chart", viewBox: `0 0 ${W} ${H + 20}`, role: "img", id: "chart-hours" },
    s("title", {}, "Uses per hour, last 48 hours"),
    s("line", { class: "axis", x1: pad, y1: H, x2: W, y2: H }),
    s("text", { x: 0, y: 12 }, String(max)), s("text", { x: 0, y: H }, "0"));
  hours.forEach((x, i) => {
    const a = (x.redemptions / max) * (H - 10), b = (x.rejected / max) * (H - 10);
    const left = pad + i * bw;
    g.appendChild(s("rect", { class: "bar-a", x: left + 1, y: H - a, width: Math.max(1, bw - 2), height: a },
      s("title", {}, `${x.hour}: ${x.redemptions} accepted, ${x.rejected} rejected`)));
    g.appendChild(s("rect", { class: "bar-b", x: left + 1, y: H - a - b, width: Math.max(1, bw - 2), height: b }));
    if (i % 6 === 0) g.appendChild(s("text", { x: left, y: H + 14 }, x.hour.slice(5, 13).replace("T", " ") + "h"));
  });
  return g;
}
function hbars(id, title, rows, cls) {
  const W = 600, rowH = 22, label = 200, H = Math.max(1, rows.length) * rowH + 4;
  const max = Math.max(1, ...rows.map((r) => r[1]));
  const g = s("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img", id }, s("title", {}, title));
  rows.forEach(([name, v, shown], i) => {
    const y = i * rowH + 2, w = (v / max) * (W - label - 80);
    g.appendChild(s("text", { x: 0, y: y + 15 }, String(name)));
    g.appendChild(s("rect", { class: cls, x: label, y, width: Math.max(1, w), height: rowH - 6 }));
    g.appendChild(s("text", { x: label + w + 6, y: y + 15 }, shown === undefined ? String(v) : shown));
  });
  if (!rows.length) g.appendChild(s("text", { x: 0, y: 16 }, "nothing yet"));
  return g;
}

async function stats() {
  frame("stats");
  const box = h("div", { id: "stats-page" }, h("p.muted", {}, "Loading…"));
  main(h("h2", {}, "Stats"), box);
  let st;
  try { st = await api("GET", "/v1/stats"); } catch (e) { box.replaceChildren(errorBox(e)); return; }
  const v = st.vouchers || {};
  box.replaceChildren(
    h("div.panel", {}, h("h3", {}, "Uses per hour, last 48 hours (UTC)"),
      h("div.legend", {}, h("span", {}, h("i.a", {}), "accepted"), h("span", {}, h("i.b", {}), "rejected")),
      barsOverTime(st.per_hour || [])),
    h("div.grid2", {},
      h("div.panel", {}, h("h3", {}, "Top coupons"),
        hbars("chart-top", "Top coupons by uses", (st.top_coupons || []).map((c) => [c.code, c.uses]), "bar-c")),
      h("div.panel", {}, h("h3", {}, "Rejections by reason, last 48 hours"),
        hbars("chart-reasons", "Rejections by reason", (st.rejections || []).map((r) => [r.reason, r.count]), "bar-b"))),
    h("div.grid2", {},
      h("div.panel", {}, h("h3", {}, `Voucher money (${v.count || 0} vouchers)`),
        hbars("chart-money", "Voucher money", [["loaded", v.loaded || 0, money(v.loaded || 0)], ["spent", v.spent || 0, money(v.spent || 0)],
          ["refunded", v.refunded || 0, money(v.refunded || 0)], ["outstanding", v.outstanding || 0, money(v.outstanding || 0)]], "bar-d")),
      h("div.panel", {}, h("h3", {}, `Coupons by status (${st.coupons.total} in all, ${st.coupons.used} used)`),
        hbars("chart-status", "Coupons by status", Object.entries(st.coupons.by_status), "bar-a"))),
    h("p.muted", {}, `As of ${when(st.as_of)}; ${st.outbox_backlog} ledger entries not in yet.`));
}

/* ---- transactions (fraud) --------------------------------------------------------------- */

const txState = { filters: {}, cursors: [null] };

function txTable(rows) {
  return h("table", { id: "transactions" },
    h("thead", {}, h("tr", {}, ["Time", "Kind", "Outcome", "Reason", "Code", "User", "Order", "Discount", "Paid", "Balance after", "Customer IP"]
      .map((t) => h("th", {}, t)))),
    h("tbody", {}, rows.map((t) => h("tr", { "data-id": t.txn_id },
      h("td", {}, when(t.ts)), h("td", {}, t.kind), h("td", {}, t.outcome), h("td", {}, t.reason || ""),
      h("td", {}, t.code || ""), h("td", {}, t.user_id || ""), h("td.num", {}, money(t.order_amount, t.currency)),
      h("td.num", {}, money(t.discount_amount, t.currency)), h("td.num", {}, money(t.paid_amount, t.currency)),
      h("td.num", {}, money(t.balance_after, t.currency)), h("td", {}, t.client_ip || "")))));
}
function txQuery() {
  const f = txState.filters;
  const iso = (v) => (v ? new Date(v).toISOString() : "");
  return { code: (f.code || "").toUpperCase(), user_id: f.user_id, client_ip: f.client_ip, kind: f.kind,
           outcome: f.outcome, reason: f.reason, from: iso(f.from), to: iso(f.to) };
}

async function transactions() {
  frame("transactions");
  const f = txState.filters;
  const sel = (name, opts) => h("select", { name, id: "t-" + name },
    opts.map((o) => h("option", { value: o, selected: (f[name] || "") === o }, o || "any")));
  const form = h("form.filters.panel", { id: "tx-filters" },
    field("Code", h("input", { name: "code", id: "t-code", value: f.code || "" })),
    field("User", h("input", { name: "user_id", id: "t-user", value: f.user_id || "" })),
    field("Customer IP or CIDR", h("input", { name: "client_ip", value: f.client_ip || "" })),
    field("Kind", sel("kind", ["", "redeem", "reverse", "pay", "refund", "recharge", "share", "coupon_create",
                               "coupon_update", "coupon_disable", "coupon_enable", "coupon_archive", "rate_limited"])),
    field("Outcome", sel("outcome", ["", "accepted", "rejected"])),
    field("Reason", h("input", { name: "reason", value: f.reason || "" })),
    field("From", h("input", { type: "datetime-local", name: "from", value: f.from || "" })),
    field("To", h("input", { type: "datetime-local", name: "to", value: f.to || "" })),
    h("button", { type: "submit", id: "t-search" }, "Search"),
    h("button.secondary", { type: "button", id: "t-export" }, "Export CSV"));
  const list = h("div", { id: "tx-list" }, h("p.muted", {}, "Loading…"));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    for (const k of ["code", "user_id", "client_ip", "kind", "outcome", "reason", "from", "to"]) f[k] = val(form, k);
    txState.cursors = [null];
    transactions();
  });
  form.elements["t-export"].addEventListener("click", async () => {
    try {
      const n = await download("/v1/transactions" + qs(txQuery()), "transactions.csv");
      list.prepend(h("div.note", { id: "t-export-done" }, `transactions.csv downloaded (${n} bytes)`));
    } catch (e) { showError(list, e); }
  });
  main(h("h2", {}, "Transactions"), form, list);
  let page;
  try {
    page = await api("GET", "/v1/transactions" + qs({ ...txQuery(), limit: 50, cursor: txState.cursors[txState.cursors.length - 1] }));
  } catch (e) { list.replaceChildren(errorBox(e)); return; }
  list.replaceChildren(page.data.length ? txTable(page.data) : h("p.muted", {}, "No transaction matches."),
    h("div.pager", {},
      h("button.secondary", { type: "button", disabled: txState.cursors.length < 2,
        on: { click: () => { txState.cursors.pop(); transactions(); } } }, "Previous"),
      h("button.secondary", { type: "button", id: "t-next", disabled: !page.has_more,
        on: { click: () => { txState.cursors.push(page.next_cursor); transactions(); } } }, "Next"),
      h("span.muted", {}, `page ${txState.cursors.length}`)));
}

/* ---- routing ------------------------------------------------------------------------------ */

async function route() {
  if (timer) { clearInterval(timer); timer = null; }
  const hash = location.hash.replace(/^#\/?/, "");
  const [name, ...rest] = hash.split("/");
  const arg = decodeURIComponent(rest.join("/"));
  if (!sessionStorage.getItem(KEY)) { signIn(); return; }
  if (!me) {
    try { me = await api("GET", "/v1/me"); } catch (e) { signIn(); return; }
  }
  const screens = {
    coupons, new: newCoupon, coupon: () => coupon(arg), batches, batch: () => batch(arg),
    vouchers, voucher: () => voucher(arg), stats, transactions,
  };
  const allowed = SCREENS.filter((x) => x[2]()).map((x) => x[0]);
  const go = screens[name];
  if (!go || name === "signin") { location.hash = "#/" + allowed[0]; return; }
  try { await go(); } catch (e) { main(errorBox(e)); }
}

document.getElementById("signout").addEventListener("click", signOut);
window.addEventListener("hashchange", route);
route();
