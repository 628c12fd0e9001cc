#!lua
--[[
refund: give money of one voucher payment back to the voucher, all that is left of it or a
part. Refunds of a payment never add up to more than it paid, so the balance never exceeds
what was loaded. The daemon has read the payment's facts (use_read.lua, or the ledger once
its entry is shipped) and passes them; what was refunded so far lives in the payment's mark
(see the prelude). The use the payment took (per-user, daily, weekly, total counts) is
given back once the payment is refunded in full.

@keys mark coupon users log record_v1 shard
@argv now_ms txn code user_id client_ip key_id request_id ref_id idem_key amount created_ms day week window_ms campaign paid currency cx
@reply ok status refunded_at refund_id replayed amount balance_after refundable_after
@reply rejected status reason refundable
@reply reused status
mark {b}:x:<id>, coupon {b}:c:<CODE> (the voucher), users {b}:u:<CODE>, log {b}:log,
record_v1 {b}:r:<id> (redeemd 0.1's record), shard: as reverse.lua's (no voucher has one).
txn: the refund's id; ref_id: the payment's;
amount "" = all that is left; idem_key: required (a refund's answer is kept under it).
created_ms, day, week, campaign, paid, currency: the payment's facts. window_ms: a payment
older than this is not refunded (reversal_window_passed).
{"reused"}: the idempotency key was used for a different refund of this payment.
client_ip: the customer's address (or the peer's); cx: the customer context, written as
the entry's "cx" (peer, session, device, email hash: rd/request.h), "" for none.
]]
local now = tonumber(ARGV[1])
local m = rd_mark_get(KEYS[1], KEYS[5])

local function log(outcome, reason, amount, bal, back)
  redis.call('XADD', KEYS[4], '*', 'id', ARGV[2], 'ts', ARGV[1], 'kind', 'refund',
    'outcome', outcome, 'reason', reason, 'code', ARGV[3], 'campaign', ARGV[15],
    'back', back and '1' or '',
    'user', ARGV[4], 'ref', ARGV[8], 'paid', outcome == 'accepted' and amount or '',
    'amount', amount, 'balance', bal or '', 'currency', ARGV[17],
    'ip', ARGV[5], 'key', ARGV[6], 'req', ARGV[7], 'idem', ARGV[9], 'cx', ARGV[18])
end

local memo = 'ri:' .. ARGV[9]
local prev = redis.call('HGET', KEYS[1], memo)
if not prev then prev = redis.call('HGET', KEYS[5], memo) end
if prev then
  local p = cjson.decode(prev)
  if p[1] ~= ARGV[10] then return {'reused'} end
  local res = p[2]
  res[4] = '1'
  return res
end

local paid, refunded = tonumber(ARGV[16]), tonumber(m[4] or '0')
local left = paid - refunded
if left <= 0 then
  log('rejected', 'already_reversed', ARGV[10], nil)
  return {'rejected', 'already_reversed', '0'}
end
local created, window = tonumber(ARGV[11]), tonumber(ARGV[14])
if now - created > window then
  log('rejected', 'reversal_window_passed', ARGV[10], nil)
  return {'rejected', 'reversal_window_passed', string.format('%d', left)}
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
local full = amount == left
if full then
  -- the payment is undone: its use no longer counts
  rd_give_back(KEYS[2], KEYS[3], ARGV[4], ARGV[12], ARGV[13])
end
local bal_s = string.format('%d', bal)
local res = {'ok', ARGV[1], ARGV[2], '0', amount_s, bal_s, string.format('%d', left - amount)}
rd_mark_put(KEYS[1], created, window, now, 'status', full and 'refunded' or 'partially_refunded',
  'at', ARGV[1], 'by', ARGV[2], 'refunded', string.format('%d', refunded + amount),
  memo, cjson.encode({ARGV[10], res}))
log('accepted', '', amount_s, bal_s, full)
return res
