#!lua
--[[
redeem: decide one validate (dry run) or redeem of a coupon, atomically.
Validate and redeem share this script so that they can never disagree: validate stops
after the check phase. Every check runs before the first write, because Redis never rolls
a script back; the first write (the idempotency record) allocates, so under OOM the script
aborts before touching a counter.

@keys coupon users idem record log
@argv mode now_ms user_id order_amount currency fp txn idem_ttl_s record_ttl_s order_id client_ip key_id request_id idem_key code
@reply ok status replayed id created_at dtype dvalue dmax min_order coupon_currency rem_total rem_user rem_daily rem_weekly order_amount currency user_id order_id code day_index week_index utc_off
@reply rejected status replayed reason id resets_at now
@reply reused status
coupon {b}:c:<CODE>, users {b}:u:<CODE> (per-user counts), idem {b}:i:... (the idempotency
record), record {b}:r:<id> (the redemption), log {b}:log (the outbox stream).
mode: "validate" | "redeem"; fp: the request's fingerprint; order_id "" for none.
Answers are flat arrays of strings (hiredis 0.14 caps reply nesting); remaining counts and
resets_at are "" where there is none; {"reused"}: the idempotency key was used with a
different request.
Counters are *used* counts compared with the current limits, so a PATCHed limit never
forgets past uses. Day/week counts live in fields "d:<user>" / "w:<user>" as
"<period index>:<count>", so a new period starts at zero without any cron job.
]]
local mode, now = ARGV[1], tonumber(ARGV[2])
local user, amount, currency = ARGV[3], ARGV[4], ARGV[5]
local fp, id = ARGV[6], ARGV[7]
local redeem = mode == 'redeem'
local day, week -- the day and ISO week a use counts in (set after the coupon is read)

if redeem then
  local prev = rd_replay(KEYS[3], fp)
  if prev then return prev end
end

-- Validate changes nothing, with one exception: an unknown code is logged (kind "validate"),
-- because probing for codes is exactly what the fraud team looks for.
local function log(outcome, reason, c)
  if not redeem and reason ~= 'coupon_not_found' then return end
  redis.call('XADD', KEYS[5], '*', 'id', id, 'ts', ARGV[2], 'kind', mode,
    'outcome', outcome, 'reason', reason, 'code', ARGV[15],
    'campaign', (c and c[12]) or '', 'user', user, 'order', ARGV[10],
    'amount', amount, 'currency', currency,
    'dtype', (c and c[1]) or '', 'dvalue', (c and c[2]) or '',
    'dmax', (c and c[3]) or '', 'min_order', (c and c[4]) or '',
    'day', outcome == 'accepted' and string.format('%d', day) or '',
    'week', outcome == 'accepted' and string.format('%d', week) or '',
    'ip', ARGV[11], 'key', ARGV[12], 'req', ARGV[13], 'idem', ARGV[14])
end

local c = rd_hmget(KEYS[1], 'dtype', 'dvalue', 'dmax', 'min_order', 'currency',
  'starts_at', 'expires_at', 'utc_off', 'l_total', 'l_user', 'l_daily', 'campaign',
  'l_weekly', 'status', 'used', 'kind')
if not c[1] then
  log('rejected', 'coupon_not_found', nil)
  return {'rejected', '0', 'coupon_not_found', id, '', ARGV[2]}
end

local function reject(reason, resets)
  local res = {'rejected', '0', reason, id, resets or '', ARGV[2]}
  if redeem then
    rd_remember(KEYS[3], fp, res, ARGV[8])
    log('rejected', reason, c)
  end
  return res
end

local off = tonumber(c[8]) or 0
day = math.floor((now + off * 60000) / 86400000)
week = math.floor((day + 3) / 7)
local function num(v) return tonumber(v or '') end

if c[16] == 'voucher' then return reject('kind_mismatch') end
if c[14] == 'disabled' then return reject('coupon_disabled') end
local starts, expires = num(c[6]), num(c[7])
if starts and now < starts then return reject('coupon_not_started') end
if expires and now >= expires then return reject('coupon_expired') end
if c[5] ~= '' and c[5] ~= currency then return reject('currency_mismatch') end
local min_order = num(c[4])
if min_order and tonumber(amount) < min_order then return reject('min_order_not_met') end

local used = num(c[15]) or 0
local l_total, l_user, l_daily, l_weekly = num(c[9]), num(c[10]), num(c[11]), num(c[13])
if l_total and used >= l_total then return reject('limit_total_reached') end

local why, resets, ut, ud, uw
why, resets, ut, ud, uw, day, week =
  rd_user_limits(KEYS[2], user, day, week, off, l_user, l_daily, l_weekly)
if why then return reject(why, resets) end
local res = {'ok', '0', id, ARGV[2], c[1], c[2], c[3], c[4], c[5],
  rd_left(l_total, used), rd_left(l_user, ut), rd_left(l_daily, ud), rd_left(l_weekly, uw),
  amount, currency, user, ARGV[10], ARGV[15], string.format('%d', day),
  string.format('%d', week), string.format('%d', off)}
if not redeem then return res end

-- Write phase: nothing above has written.
rd_remember(KEYS[3], fp, res, ARGV[8])
redis.call('HINCRBY', KEYS[1], 'used', 1)
rd_user_count(KEYS[2], user, ut, ud, uw, day, week)
redis.call('HSET', KEYS[4], 'code', ARGV[15], 'user', user, 'order', ARGV[10],
  'amount', amount, 'currency', currency, 'dtype', c[1], 'dvalue', c[2], 'dmax', c[3],
  'min_order', c[4], 'created_at', ARGV[2], 'day', string.format('%d', day),
  'week', string.format('%d', week), 'utc_off', string.format('%d', off),
  'status', 'active', 'key', ARGV[12], 'campaign', c[12])
redis.call('EXPIRE', KEYS[4], ARGV[9])
log('accepted', '', c)
return res
