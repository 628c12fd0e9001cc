#!lua
--[[
reverse: give one redemption's use back, to the day and week it was taken from, once.
The daemon has read the redemption's facts (use_read.lua, or the ledger once the entry is
shipped) and passes them; what was given back lives in the redemption's mark (see the
prelude), so two reversals can never both give the use back, whichever source their facts
came from. A period counter is only decremented while that period is still the current
one: a use taken in a past day or week no longer counts against anything.

@keys mark coupon users log record_v1 shard
@argv now_ms txn code user_id client_ip key_id request_id ref_id idem_key created_ms day week window_ms campaign amount currency cx
@reply ok status reversed_at reversal_id replayed
@reply rejected status reason reversed_at reversal_id
mark {b}:x:<id>, coupon {b}:c:<CODE>, users {b}:u:<CODE>, log {b}:log, record_v1 {b}:r:<id>
(redeemd 0.1's record, for what it says was given back), shard {b}:s:<CODE> (a hot
coupon's shard: when it exists, the use was counted there and goes back to its budget). txn: the reversal's id; ref_id:
the redemption's; idem_key "" for none (a second reverse with the same key replays the
first answer). created_ms, day, week, campaign, amount, currency: the redemption's facts.
window_ms: a redemption older than this is not reversed (reversal_window_passed).
client_ip: the customer's address (or the peer's); cx: the customer context, written as
the entry's "cx" (peer, session, device, email hash: rd/request.h), "" for none.
]]
local now = tonumber(ARGV[1])
local m = rd_mark_get(KEYS[1], KEYS[5])

local function log(outcome, reason)
  redis.call('XADD', KEYS[4], '*', 'id', ARGV[2], 'ts', ARGV[1], 'kind', 'reverse',
    'outcome', outcome, 'reason', reason, 'code', ARGV[3], 'campaign', ARGV[14],
    'user', ARGV[4], 'ref', ARGV[8], 'amount', ARGV[15], 'currency', ARGV[16],
    'ip', ARGV[5], 'key', ARGV[6], 'req', ARGV[7], 'idem', ARGV[9], 'cx', ARGV[17])
end

if m[1] == 'reversed' then
  if ARGV[9] ~= '' and m[5] == ARGV[9] then return {'ok', m[2], m[3], '1'} end
  log('rejected', 'already_reversed')
  return {'rejected', 'already_reversed', m[2], m[3]}
end
local created, window = tonumber(ARGV[10]), tonumber(ARGV[13])
if now - created > window then
  log('rejected', 'reversal_window_passed')
  return {'rejected', 'reversal_window_passed', '', ''}
end

local ckey = KEYS[2]
if redis.call('EXISTS', KEYS[6]) == 1 then ckey = KEYS[6] end
rd_give_back(ckey, KEYS[3], ARGV[4], ARGV[11], ARGV[12])
rd_mark_put(KEYS[1], created, window, now, 'status', 'reversed', 'at', ARGV[1], 'by', ARGV[2],
  'idem', ARGV[9])
log('accepted', '')
return {'ok', ARGV[1], ARGV[2], '0'}
