#!lua
--[[
coupon_write: create a coupon, or change one, and log the change for the audit trail.
Counters ("used", and the per-user hash) are never written here: definitions and usage are
separate, so editing a limit can never reset what has been used.

@keys coupon log shard users
@argv mode ver now_ms txn key_id request_id client_ip action ...fields
@reply rejected status reason
coupon {b}:c:<CODE>, log {b}:log (the outbox stream), shard {b}:s:<CODE> and users
{b}:u:<CODE> (a hot coupon's first shard and its per-user counts, in the home bucket:
rd/shards.h). mode: "create" (must not exist) |
"update" (must exist; ver is the version read, "" to skip the check); action: the ledger
kind (coupon_create, ...); fields: field, value pairs.
A hot coupon ("shards" set at creation, never changed) keeps its total in its shards'
budgets: creating one puts the whole total in the first shard's budget (the daemon then
moves each shard's part there), and a change of l_total adds the difference to it, in the
same step as the definition, so no crash can leave the two apart. A budget that goes below
zero is paid back from the other shards by the daemon.
Returns {"ok", field1, value1, ...}   the whole hash after the write
        rejected: reason coupon_exists | coupon_not_found | conflict
]]
local mode, exists = ARGV[1], redis.call('EXISTS', KEYS[1]) == 1
if mode == 'create' and exists then return {'rejected', 'coupon_exists'} end
if mode ~= 'create' and not exists then return {'rejected', 'coupon_not_found'} end
-- every check before the first write: the version as read through a batch code's template
if mode == 'update' and ARGV[2] ~= '' and rd_hmget(KEYS[1], 'ver')[1] ~= ARGV[2] then
  return {'rejected', 'conflict'}
end
-- an edited batch code keeps its own full definition from then on (see the prelude)
if mode ~= 'create' then rd_materialize(KEYS[1]) end

local fields, before, after = {}, {}, {}
for i = 9, #ARGV, 2 do
  fields[#fields + 1] = ARGV[i]
  fields[#fields + 1] = ARGV[i + 1]
  after[ARGV[i]] = ARGV[i + 1]
end
if exists then
  -- The audit entry keeps only what changed, with its value before.
  for i = 1, #fields, 2 do
    local o = redis.call('HGET', KEYS[1], fields[i])
    if o ~= fields[i + 1] then before[fields[i]] = o or '' else after[fields[i]] = nil end
  end
end
local sharded = after.shards or redis.call('HEXISTS', KEYS[1], 'shards') == 1
if sharded and after.l_total then
  local was = mode == 'create' and 0 or tonumber(redis.call('HGET', KEYS[1], 'l_total') or '0')
  local delta = (tonumber(after.l_total) or 0) - was
  if mode == 'create' then
    -- whatever an earlier coupon of this code left there is not this one's; the coupon's
    -- generation (the id of its creation) tells the other shards the same (shard_sync.lua)
    redis.call('DEL', KEYS[3], KEYS[4])
    redis.call('HSET', KEYS[3], 'used', 0, 'gen', ARGV[4])
    fields[#fields + 1] = 'gen'
    fields[#fields + 1] = ARGV[4]
  end
  if delta ~= 0 or mode == 'create' then redis.call('HINCRBY', KEYS[3], 'budget', delta) end
end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('HINCRBY', KEYS[1], 'ver', 1)
-- "v2": created by this version, so no redeemd 0.1 counts or records exist to be read for it
-- (rd_user_get in the prelude)
if mode == 'create' then redis.call('HSET', KEYS[1], 'used', 0, 'v2', 1) end
redis.call('XADD', KEYS[2], '*', 'id', ARGV[4], 'ts', ARGV[3], 'kind', ARGV[8],
  'outcome', 'accepted', 'reason', '', 'code', redis.call('HGET', KEYS[1], 'code'),
  'campaign', redis.call('HGET', KEYS[1], 'campaign') or '',
  'ip', ARGV[7], 'key', ARGV[5], 'req', ARGV[6],
  'before', cjson.encode(before), 'after', cjson.encode(after))
local res = {'ok'}
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all do res[#res + 1] = all[i] end
return res
