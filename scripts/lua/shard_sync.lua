#!lua
--[[
shard_sync: bring one shard of a hot coupon (rd/shards.h) up to its home hash's definition,
creating the shard if it is missing. The daemon calls it after every write of a sharded
coupon, and whenever a shard answers "noshard"; reconcile calls it for any shard behind.
Versions only go forward: an older definition arriving late changes nothing. The total is
not here: a shard's part of it is its budget, which only moves (shard_move.lua) or comes
with coupon_write.lua's change of the total.

@keys shard users
@argv gen ver ...fields
@reply ok status budget used ver
shard {b}:s:<CODE>, users {b}:u:<CODE> (the shard's per-user counts); gen: the coupon's
generation (the id of its creation, field "gen" of the home hash); ver: the home hash's
version; fields: field, value pairs of the definition (l_total, if passed, is not copied).
A shard of another generation is what an earlier coupon of the same code left behind (its
deletion failed): it is dropped, counts and budget with it, before this one is written.
]]
local g = redis.call('HGET', KEYS[1], 'gen')
if g and g ~= ARGV[1] then redis.call('DEL', KEYS[1], KEYS[2]) end
local cur = tonumber(redis.call('HGET', KEYS[1], 'ver') or '-1')
if cur < tonumber(ARGV[2]) then
  local f = {'gen', ARGV[1]}
  for i = 3, #ARGV, 2 do
    if ARGV[i] ~= 'l_total' then
      f[#f + 1] = ARGV[i]
      f[#f + 1] = ARGV[i + 1]
    end
  end
  redis.call('HSET', KEYS[1], 'ver', ARGV[2], unpack(f))
  redis.call('HSETNX', KEYS[1], 'budget', 0)
  redis.call('HSETNX', KEYS[1], 'used', 0)
  redis.call('HSETNX', KEYS[1], 'v2', 1) -- (shards came after 0.1: see rd_user_get)
end
local v = redis.call('HMGET', KEYS[1], 'budget', 'used', 'ver')
return {'ok', v[1], v[2], v[3]}
