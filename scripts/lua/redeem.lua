#!lua
--[[
redeem: decide one validate (dry run) or redeem of a coupon, atomically.
Validate and redeem share this script so that they can never disagree: validate stops
after the check phase. Every check runs before the first write, because Redis never rolls
a script back (and refuses a script up front, never halfway, when it is out of memory).

@keys coupon users idem idem_v1 log idem_1 idem_2
@argv mode now_ms user_id order_amount currency fp txn idem_field idem_slice_ms order_id client_ip key_id request_id idem_key code route cx
@reply ok status replayed id created_at dtype dvalue dmax min_order rem_total rem_user rem_daily rem_weekly
@reply rejected status replayed reason id resets_at now
@reply reused status
@reply shipped status replayed id
@reply sharded status layout
@function
coupon {b}:c:<CODE>, users {b}:u:<CODE> (per-user counts), idem {b}:i:<slice ms>:<slice>
(this time slice's idempotency records, see the prelude), idem_v1 {b}:i:<CODE>:<key>:<idem>
(a record of redeemd 0.1), log {b}:log (the outbox stream), idem_1 and idem_2 the two
slices before idem's.
mode: "validate" | "redeem"; fp: the request's fingerprint (8 bytes); txn: a fresh id, whose
bucket and first symbols make the redemption's id; idem_field: the record's field (digest of
code, API key and Idempotency-Key); order_id "" for none.
Answers are flat arrays of strings (hiredis 0.14 caps reply nesting), the ok answer packed:
one string of its values joined by '\0', which Redis returns for about 1.5 µs less than an
array of 12 (an array goes out through a deferred-length reply; the daemon reads both the
same way, rd_reply_view). Remaining counts and resets_at are "" where there is none;
{"reused"}: the idempotency key was used with a different request; {"shipped", "1", id}: a
replay of a redemption whose entry has been shipped: the daemon answers it from the ledger.
Hot coupons (rd/shards.h): a home hash with "shards" answers {"sharded", layout} and the
daemon calls again on the user's shard, with coupon {b}:s:<CODE> and route "1" ("" for a
home call). A shard's total is its "budget": at zero it answers {"borrow"} (nothing
written) for the daemon to move budget from another shard, and rejects for real only when
called with route "2" (the daemon found none to borrow). {"noshard"}: the shard hash is
missing or incomplete; the daemon repairs it from the home hash.
The coupon is read first: its "v2" mark (a coupon of this version) says that no 0.1 record
or count can exist for it, so none is looked up (rd_user_get in the prelude).
Nothing is kept per redemption but its outbox entry (until shipped) and its idempotency
record: the entry carries everything the answer holds, so a replay rebuilds it from there.
Counters are *used* counts compared with the current limits, so a PATCHed limit never
forgets past uses; day and week counts carry their period's index, so a new period starts
at zero without any cron job.
client_ip: the customer's address (or the peer's); cx: the customer context, written as
the entry's "cx" (peer, session, device, email hash: rd/request.h), "" for none.
]]
local mode, now = ARGV[1], tonumber(ARGV[2])
local user, amount, currency = ARGV[3], ARGV[4], ARGV[5]
local fp, txn, field, slice_ms = ARGV[6], ARGV[7], ARGV[8], tonumber(ARGV[9])
local redeem = mode == 'redeem'
local day, week -- the day and ISO week a use counts in (set after the coupon is read)

local c = rd_hmget(KEYS[1], 'dtype', 'dvalue', 'dmax', 'min_order', 'currency',
  'starts_at', 'expires_at', 'utc_off', 'l_total', 'l_user', 'l_daily', 'campaign',
  'l_weekly', 'status', 'used', 'kind', 'shards', 'budget', 'v2')
if redeem then
  local prev = rd_replay(KEYS[3], not c[19] and KEYS[4], field, fp, KEYS[6], KEYS[7])
  if prev and prev[1] == 'use' then
    local id = rd_use_id(txn, prev[2])
    local e = rd_entry(KEYS[5], prev[2])
    if e and e.tag == rd_use_tag(txn) then
      -- The first answer, rebuilt from the outbox entry, as ok() below made it. What the
      -- request said (code, user, amount, currency, order) is not sent back: a replay is the
      -- same request (its fingerprint).
      local t, u, d, w = rd_split4(e.left)
      return 'ok\0' .. '1\0' .. id .. '\0' .. e.ts .. '\0' .. e.dtype .. '\0' .. e.dvalue ..
        '\0' .. e.dmax .. '\0' .. e.min_order .. '\0' .. t .. '\0' .. u .. '\0' .. d .. '\0' .. w
    end
    return {'shipped', '1', id}
  end
  if prev then return prev end
end

-- Validate changes nothing, with one exception: an unknown code is logged (kind "validate"),
-- because probing for codes is exactly what the fraud team looks for. Returns the entry's id.
local function log(outcome, reason, c, left)
  local acc = outcome == 'accepted'
  local sid = redis.call('XADD', KEYS[5], '*', 'u', rd_use_entry(rd_use_tag(txn), ARGV[2],
    mode, outcome, reason, ARGV[15], (c and c[12]) or '', user, ARGV[10], amount, currency,
    (c and c[1]) or '', (c and c[2]) or '', (c and c[3]) or '', (c and c[4]) or '',
    acc and day or '', acc and week or '', left or '', '', '',
    ARGV[11], ARGV[12], ARGV[13], ARGV[14], ARGV[17]))
  return rd_use_id(txn, sid), sid
end

local route = ARGV[16]
if route ~= '' and not c[1] then return {'noshard'} end
if c[17] then return {'sharded', c[17]} end
if not c[1] then
  local id = log('rejected', 'coupon_not_found', nil)
  return {'rejected', '0', 'coupon_not_found', id, '', ARGV[2]}
end

local function reject(reason, resets)
  if not redeem then return {'rejected', '0', reason, txn, resets or '', ARGV[2]} end
  local id = log('rejected', reason, c)
  local res = {'rejected', '0', reason, id, resets or '', ARGV[2]}
  rd_remember(KEYS[3], field, fp, res, slice_ms, now)
  return res
end

local off = tonumber(c[8]) or 0
day = math.floor((now + off * 60000) / 86400000)
week = math.floor((day + 3) / 7)

if c[16] == 'voucher' then return reject('kind_mismatch') end
if c[14] == 'disabled' then return reject('coupon_disabled') end
local starts, expires = tonumber(c[6]), tonumber(c[7])
if starts and now < starts then return reject('coupon_not_started') end
if expires and now >= expires then return reject('coupon_expired') end
if c[5] ~= '' and c[5] ~= currency then return reject('currency_mismatch') end
local min_order = tonumber(c[4])
if min_order and tonumber(amount) < min_order then return reject('min_order_not_met') end

local used = tonumber(c[15]) or 0
local l_total, l_user, l_daily, l_weekly =
  tonumber(c[9]), tonumber(c[10]), tonumber(c[11]), tonumber(c[13])
if l_total and used >= l_total then return reject('limit_total_reached') end
local budget = tonumber(c[18]) -- a shard's (its copy of the definition has no l_total)
if route ~= '' and (budget or 0) <= 0 then
  if route == '1' then return {'borrow'} end
  return reject('limit_total_reached')
end

local why, resets, u
why, resets, u, day, week =
  rd_user_limits(KEYS[2], user, day, week, off, l_user, l_daily, l_weekly, c[19])
if why then return reject(why, resets) end
local lt, lu, ld, lw = rd_left(l_total, used), rd_left(l_user, u[1]), rd_left(l_daily, u[2]),
  rd_left(l_weekly, u[3])
-- The answer (a replay rebuilds the same from the outbox entry, above)
local function ok(id)
  return 'ok\0' .. '0\0' .. id .. '\0' .. ARGV[2] .. '\0' .. c[1] .. '\0' .. (c[2] or '') ..
    '\0' .. (c[3] or '') .. '\0' .. (c[4] or '') .. '\0' .. lt .. '\0' .. lu .. '\0' .. ld ..
    '\0' .. lw
end
if not redeem then return ok(txn) end

-- Write phase: nothing above has written.
local id, sid = log('accepted', '', c, lt .. ',' .. lu .. ',' .. ld .. ',' .. lw)
rd_remember_use(KEYS[3], field, fp, sid, slice_ms, now)
redis.call('HINCRBY', KEYS[1], 'used', 1)
if route ~= '' then redis.call('HINCRBY', KEYS[1], 'budget', -1) end
rd_user_count(KEYS[2], user, u, day, week)
return ok(id)
