#!lua
--[[
refund: give money of one voucher payment back to the voucher, all that is left of it or a
part. Refunds of a payment never add up to more than it paid, so the balance never exceeds
what was loaded. The daemon reads the payment's code and user first (to name the keys) and
passes them back; the script re-checks them. The use the payment took (per-user, daily,
weekly, total counts) is given back once the payment is refunded in full.

@keys record coupon users log
@argv now_ms txn code user_id client_ip key_id request_id ref_id idem_key amount
@reply ok status refunded_at refund_id replayed amount balance_after refundable_after
@reply rejected status reason refundable
@reply reused status
record {b}:r:<id> (the payment), coupon {b}:c:<CODE> (the voucher), users {b}:u:<CODE>,
log {b}:log. txn: the refund's id; ref_id: the payment's; amount "" = all that is left.
{"reused"}: the idempotency key was used for a different refund of this payment.
]]
local now = ARGV[1]
local r = redis.call('HMGET', KEYS[1], 'code', 'user', 'kind', 'paid', 'refunded', 'status',
  'day', 'week', 'currency', 'campaign')

local function log(outcome, reason, amount, bal)
  redis.call('XADD', KEYS[4], '*', 'id', ARGV[2], 'ts', now, 'kind', 'refund',
    'outcome', outcome, 'reason', reason, 'code', r[1] or ARGV[3], 'campaign', r[10] or '',
    'user', r[2] or ARGV[4], 'ref', ARGV[8], 'paid', outcome == 'accepted' and amount or '',
    'amount', amount, 'balance', bal or '', 'currency', r[9] or '',
    'ip', ARGV[5], 'key', ARGV[6], 'req', ARGV[7], 'idem', ARGV[9])
end

if not r[1] or r[1] ~= ARGV[3] or r[2] ~= ARGV[4] or r[3] ~= 'pay' then
  log('rejected', 'redemption_not_found', ARGV[10], nil)
  return {'rejected', 'redemption_not_found', ''}
end
local memo = 'ri:' .. ARGV[9]
local prev = redis.call('HGET', KEYS[1], memo)
if prev then
  local p = cjson.decode(prev)
  if p[1] ~= ARGV[10] then return {'reused'} end
  local res = p[2]
  res[4] = '1'
  return res
end

local paid, refunded = tonumber(r[4]), tonumber(r[5] or '0')
local left = paid - refunded
if left <= 0 then
  log('rejected', 'already_reversed', ARGV[10], nil)
  return {'rejected', 'already_reversed', '0'}
end
local amount = left
if ARGV[10] ~= '' then amount = tonumber(ARGV[10]) end
if amount > left then
  log('rejected', 'refund_exceeds_payment', ARGV[10], nil)
  return {'rejected', 'refund_exceeds_payment', string.format('%d', left)}
end

-- money goes to Redis as integer strings: a Lua number may print as 1e+15
local amount_s = string.format('%d', amount)
rd_own(KEYS[2], 'bal')
local bal = redis.call('HINCRBY', KEYS[2], 'bal', amount_s)
redis.call('HINCRBY', KEYS[2], 'refunded', amount_s)
redis.call('HINCRBY', KEYS[1], 'refunded', amount_s)
local full = amount == left
if full then
  -- the payment is undone: its use no longer counts
  rd_give_back(KEYS[2], KEYS[3], r[2], r[7], r[8])
end
redis.call('HSET', KEYS[1], 'status', full and 'refunded' or 'partially_refunded',
  'reversed_at', now, 'reversal_id', ARGV[2])
local bal_s = string.format('%d', bal)
local res = {'ok', now, ARGV[2], '0', amount_s, bal_s, string.format('%d', left - amount)}
redis.call('HSET', KEYS[1], memo, cjson.encode({ARGV[10], res}))
log('accepted', '', amount_s, bal_s)
return res
