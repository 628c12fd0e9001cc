#!lua
--[[
archive: take one dead code out of Redis (its definition and per-user counts) to free memory.
PostgreSQL keeps it: the ledger row written here marks it archived in the coupons mirror,
where listings and GET /v1/coupons/{code} still find it; redeeming it answers
coupon_not_found. The state is checked here, atomically, so a code that came back to life
since it was picked (a reversal, an enable) is left alone.

@keys coupon users log
@argv now_ms txn state expired_before key_id request_id dry_run
coupon {b}:c:<CODE>, users {b}:u:<CODE> (per-user counts), log {b}:log (the outbox).
state: expired | exhausted | disabled; expired_before: ms, "" = any time; dry_run: "1".
Returns 1 if archived (or, dry, would be), 0 if the code is not in that state. A hot
coupon (rd/shards.h) answers its layout instead of 1 when archived: the caller then deletes
its shards (they refuse uses meanwhile, as their copies of the definition say expired or
disabled); it is never archived as exhausted, which only the sum of its shards can tell.
]]
local now = tonumber(ARGV[1])
local c = rd_hmget(KEYS[1], 'code', 'status', 'expires_at', 'l_total', 'used',
  'kind', 'bal', 'campaign', 'shards')
if not c[1] then return 0 end
local function num(v) return tonumber(v or '') end
local state, match = ARGV[3], false
if state == 'expired' then
  local e, before = num(c[3]), num(ARGV[4])
  match = e ~= nil and e <= now and (before == nil or e < before)
elseif state == 'exhausted' then
  local lt, used = num(c[4]), num(c[5]) or 0
  match = not c[9] and ((lt ~= nil and used >= lt) or (c[6] == 'voucher' and (num(c[7]) or 0) <= 0))
elseif state == 'disabled' then
  match = c[2] == 'disabled'
end
if not match then return 0 end
if ARGV[7] == '1' then return 1 end
redis.call('XADD', KEYS[3], '*', 'id', ARGV[2], 'ts', ARGV[1], 'kind', 'coupon_archive',
  'outcome', 'accepted', 'reason', '', 'code', c[1], 'campaign', c[8] or '',
  'key', ARGV[5], 'req', ARGV[6],
  'before', cjson.encode({state = state}), 'after', cjson.encode({archived_at = ARGV[1]}))
redis.call('DEL', KEYS[1], KEYS[2])
return c[9] or 1
