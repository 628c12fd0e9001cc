#!lua
--[[
reverse: give one redemption's use back, to the day and week it was taken from.
The daemon reads the record's code and user first (to name the keys) and passes them back;
the script re-checks them, so a record cannot change between the two calls unnoticed.
A period counter is only decremented while that period is still the current one: a use
taken in a past day or week no longer counts against anything.

KEYS[1] {b}:r:<id>  redemption record   KEYS[2] {b}:c:<CODE>  coupon
KEYS[3] {b}:u:<CODE> per-user counts    KEYS[4] {b}:log       outbox stream
ARGV 1 now_ms  2 reversal transaction id  3 code  4 user  5 client ip  6 api key id
     7 request id  8 redemption id  9 idempotency key ("" for none)
Returns {"ok", reversed_at, reversal_id, replayed}
A second reverse with the same (non-empty) idempotency key replays the first answer.
        {"rejected", reason, reversed_at or "", reversal_id}
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
