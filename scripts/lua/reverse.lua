#!lua
--[[
reverse: give one redemption's use back, to the day and week it was taken from.
The daemon reads the record's code and user first (to name the keys) and passes them back;
the script re-checks them, so a record cannot change between the two calls unnoticed.
A period counter is only decremented while that period is still the current one: a use
taken in a past day or week no longer counts against anything.

@keys record coupon users log
@argv now_ms txn code user_id client_ip key_id request_id ref_id idem_key
@reply ok status reversed_at reversal_id replayed
@reply rejected status reason reversed_at reversal_id
record {b}:r:<id> (the redemption), coupon {b}:c:<CODE>, users {b}:u:<CODE>, log {b}:log.
txn: the reversal's id; ref_id: the redemption's; idem_key "" for none. A second reverse
with the same (non-empty) idempotency key replays the first answer.
]]
local now = ARGV[1]
local r = redis.call('HMGET', KEYS[1], 'code', 'user', 'status', 'day', 'week',
  'reversed_at', 'reversal_id', 'amount', 'currency', 'campaign', 'reversal_idem')

local function log(outcome, reason)
  redis.call('XADD', KEYS[4], '*', 'id', ARGV[2], 'ts', now, 'kind', 'reverse',
    'outcome', outcome, 'reason', reason, 'code', r[1] or ARGV[3], 'campaign', r[10] or '',
    'user', r[2] or ARGV[4], 'ref', ARGV[8], 'amount', r[8] or '', 'currency', r[9] or '',
    'ip', ARGV[5], 'key', ARGV[6], 'req', ARGV[7], 'idem', ARGV[9])
end

if not r[1] or r[1] ~= ARGV[3] or r[2] ~= ARGV[4] then
  log('rejected', 'redemption_not_found')
  return {'rejected', 'redemption_not_found', '', ARGV[2]}
end
if r[3] == 'reversed' and ARGV[9] ~= '' and r[11] == ARGV[9] then
  return {'ok', r[6], r[7], '1'}
end
if r[3] == 'reversed' then
  log('rejected', 'already_reversed')
  return {'rejected', 'already_reversed', r[6], r[7]}
end

redis.call('HSET', KEYS[1], 'status', 'reversed', 'reversed_at', now, 'reversal_id', ARGV[2],
  'reversal_idem', ARGV[9])
rd_give_back(KEYS[2], KEYS[3], r[2], r[4], r[5])
log('accepted', '')
return {'ok', now, ARGV[2], '0'}
