#!lua
--[[
pay: spend part of a voucher's balance, atomically. Like redeem.lua: every check runs before
the first write, the idempotency record is written first, and the outbox entry (with the
balance after) is part of the same script, so a payment and its ledger row cannot part.
A payment is also a use: per-user, daily, weekly and total counts apply as to coupons.

@keys coupon users idem record log
@argv now_ms user_id amount currency fp txn idem_ttl_s record_ttl_s order_id client_ip key_id request_id idem_key code
@reply ok status replayed id created_at amount currency balance_after rem_total rem_user rem_daily rem_weekly user_id order_id code
@reply rejected status replayed reason id resets_at balance
@reply reused status
coupon {b}:c:<CODE> (the voucher), users {b}:u:<CODE> (per-user counts), idem {b}:i:...
(the idempotency record), record {b}:r:<id> (the payment), log {b}:log (the outbox).
fp: the request's fingerprint; order_id "" for none. Remaining counts and resets_at are ""
where there is none; {"reused"}: the idempotency key was used with another request.
]]
local now, user, amount, currency = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3]), ARGV[4]
local fp, id = ARGV[5], ARGV[6]

local prev = rd_replay(KEYS[3], fp)
if prev then return prev end

local c = rd_hmget(KEYS[1], 'kind', 'currency', 'starts_at', 'expires_at',
  'utc_off', 'l_total', 'l_user', 'l_daily', 'l_weekly', 'status', 'used', 'bal', 'campaign')

local day, week -- the day and ISO week the use counts in (set once the voucher is read)
local function log(outcome, reason, bal)
  redis.call('XADD', KEYS[5], '*', 'id', id, 'ts', ARGV[1], 'kind', 'pay',
    'day', outcome == 'accepted' and string.format('%d', day) or '',
    'week', outcome == 'accepted' and string.format('%d', week) or '',
    'outcome', outcome, 'reason', reason, 'code', ARGV[14], 'campaign', c[13] or '',
    'user', user, 'order', ARGV[9], 'paid', outcome == 'accepted' and ARGV[3] or '',
    'amount', ARGV[3], 'balance', bal or '', 'currency', currency,
    'ip', ARGV[10], 'key', ARGV[11], 'req', ARGV[12], 'idem', ARGV[13])
end

if not c[1] then
  log('rejected', 'coupon_not_found', nil)
  return {'rejected', '0', 'coupon_not_found', id, '', ''}
end

local function reject(reason, resets, bal)
  local res = {'rejected', '0', reason, id, resets or '', bal or ''}
  rd_remember(KEYS[3], fp, res, ARGV[7])
  log('rejected', reason, bal)
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
local why, resets, ut, ud, uw
why, resets, ut, ud, uw, day, week =
  rd_user_limits(KEYS[2], user, day, week, off, l_user, l_daily, l_weekly)
if why then return reject(why, resets) end
local bal = num(c[12]) or 0
if amount > bal then return reject('insufficient_balance', nil, string.format('%d', bal)) end
local after = string.format('%d', bal - amount)
local res = {'ok', '0', id, ARGV[1], ARGV[3], currency, after,
  rd_left(l_total, used), rd_left(l_user, ut), rd_left(l_daily, ud), rd_left(l_weekly, uw),
  user, ARGV[9], ARGV[14]}
rd_remember(KEYS[3], fp, res, ARGV[7])
-- money goes to Redis as integer strings: a Lua number may print as 1e+15
rd_own(KEYS[1], 'bal')
redis.call('HINCRBY', KEYS[1], 'bal', '-' .. ARGV[3])
redis.call('HINCRBY', KEYS[1], 'spent', ARGV[3])
redis.call('HINCRBY', KEYS[1], 'used', 1)
rd_user_count(KEYS[2], user, ut, ud, uw, day, week)
redis.call('HSET', KEYS[4], 'kind', 'pay', 'code', ARGV[14], 'user', user, 'order', ARGV[9],
  'paid', ARGV[3], 'refunded', 0, 'currency', currency, 'created_at', ARGV[1],
  'day', string.format('%d', day), 'week', string.format('%d', week),
  'utc_off', string.format('%d', off), 'status', 'active', 'key', ARGV[11],
  'campaign', c[13] or '', 'balance_after', after)
redis.call('EXPIRE', KEYS[4], ARGV[8])
log('accepted', '', after)
return res
