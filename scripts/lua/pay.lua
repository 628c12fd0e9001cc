#!lua
--[[
pay: spend part of a voucher's balance, atomically. Like redeem.lua: every check runs before
the first write, and the outbox entry (with the balance after) is part of the same script,
so a payment and its ledger row cannot part. A payment is also a use: per-user, daily,
weekly and total counts apply as to coupons.

@keys coupon users idem idem_v1 log idem_1 idem_2
@argv now_ms user_id amount currency fp txn idem_field idem_slice_ms order_id client_ip key_id request_id idem_key code cx
@reply ok status replayed id created_at balance_after rem_total rem_user rem_daily rem_weekly
@reply rejected status replayed reason id resets_at balance
@reply reused status
@reply shipped status replayed id
@function
coupon {b}:c:<CODE> (the voucher), users {b}:u:<CODE> (per-user counts), idem and idem_v1
the idempotency records (as redeem.lua, with idem_1 and idem_2), log {b}:log (the outbox).
fp: the request's fingerprint; order_id "" for none. The ok answer comes packed, as
redeem.lua's (one string, '\0'-joined). Remaining counts and resets_at are "" where there
is none; {"reused"}: the idempotency key was used with another request;
{"shipped", "1", id}: a replay of a payment already shipped (the daemon answers from the
ledger). Nothing is kept per payment but its outbox entry and its idempotency record.
client_ip: the customer's address (or the peer's); cx: the customer context, written as
the entry's "cx" (peer, session, device, email hash: rd/request.h), "" for none.
]]
local now, user, amount, currency = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3]), ARGV[4]
local fp, txn, field, slice_ms = ARGV[5], ARGV[6], ARGV[7], tonumber(ARGV[8])

-- The answer to an accepted payment, from its outbox entry: first answer and replays alike
-- (what the request said is not sent back: a replay is the same request).
local function answer(e, id, replayed) -- (packed, as redeem.lua's)
  local t, u, d, w = rd_split4(e.left)
  return 'ok\0' .. replayed .. '\0' .. id .. '\0' .. e.ts .. '\0' .. e.balance .. '\0' .. t ..
    '\0' .. u .. '\0' .. d .. '\0' .. w
end

local c = rd_hmget(KEYS[1], 'kind', 'currency', 'starts_at', 'expires_at',
  'utc_off', 'l_total', 'l_user', 'l_daily', 'l_weekly', 'status', 'used', 'bal', 'campaign',
  'v2')
local prev = rd_replay(KEYS[3], not c[14] and KEYS[4], field, fp, KEYS[6], KEYS[7])
if prev and prev[1] == 'use' then
  local id = rd_use_id(txn, prev[2])
  local e = rd_entry(KEYS[5], prev[2])
  if e and e.tag == rd_use_tag(txn) then return answer(e, id, '1') end
  return {'shipped', '1', id}
end
if prev then return prev end

local day, week -- the day and ISO week the use counts in (set once the voucher is read)
local function log(outcome, reason, bal, left)
  local acc = outcome == 'accepted'
  local sid = redis.call('XADD', KEYS[5], '*', 'u', rd_use_entry(rd_use_tag(txn), ARGV[1],
    'pay', outcome, reason, ARGV[14], c[13] or '', user, ARGV[9], ARGV[3], currency,
    '', '', '', '', acc and day or '', acc and week or '', left or '',
    acc and ARGV[3] or '', bal or '', ARGV[10], ARGV[11], ARGV[12], ARGV[13], ARGV[15]))
  return rd_use_id(txn, sid), sid
end

if not c[1] then
  local id = log('rejected', 'coupon_not_found', nil)
  return {'rejected', '0', 'coupon_not_found', id, '', ''}
end

local function reject(reason, resets, bal)
  local id = log('rejected', reason, bal)
  local res = {'rejected', '0', reason, id, resets or '', bal or ''}
  rd_remember(KEYS[3], field, fp, res, slice_ms, now)
  return res
end

local function num(v) return tonumber(v or '') end
if c[1] ~= 'voucher' then return reject('kind_mismatch') end
if c[10] == 'disabled' then return reject('coupon_disabled') end
local starts, expires = num(c[3]), num(c[4])
if starts and now < starts then return reject('coupon_not_started') end
if expires and now >= expires then return reject('coupon_expired') end
if c[2] ~= currency then return reject('currency_mismatch') end

local off = tonumber(c[5]) or 0
day = math.floor((now + off * 60000) / 86400000)
week = math.floor((day + 3) / 7)
local used = num(c[11]) or 0
local l_total, l_user, l_daily, l_weekly = num(c[6]), num(c[7]), num(c[8]), num(c[9])
if l_total and used >= l_total then return reject('limit_total_reached') end
local why, resets, u
why, resets, u, day, week =
  rd_user_limits(KEYS[2], user, day, week, off, l_user, l_daily, l_weekly, c[14])
if why then return reject(why, resets) end
local bal = num(c[12]) or 0
if amount > bal then return reject('insufficient_balance', nil, string.format('%d', bal)) end
local after = string.format('%d', bal - amount)
local left = rd_left(l_total, used) .. ',' .. rd_left(l_user, u[1]) .. ',' ..
  rd_left(l_daily, u[2]) .. ',' .. rd_left(l_weekly, u[3])

local id, sid = log('accepted', '', after, left)
rd_remember_use(KEYS[3], field, fp, sid, slice_ms, now)
-- money goes to Redis as integer strings: a Lua number may print as 1e+15
rd_own(KEYS[1], 'bal')
redis.call('HINCRBY', KEYS[1], 'bal', '-' .. ARGV[3])
redis.call('HINCRBY', KEYS[1], 'spent', ARGV[3])
redis.call('HINCRBY', KEYS[1], 'used', 1)
rd_user_count(KEYS[2], user, u, day, week)
return answer({ts = ARGV[1], balance = after, left = left}, id, '0')
