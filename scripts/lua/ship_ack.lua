#!lua
--[[
ship_ack: acknowledge entries the shipper has committed to PostgreSQL, then trim the stream
below what is safe to drop: everything before the oldest entry still pending in any
consumer's list, or, with nothing pending, everything delivered so far. Never MAXLEN, which
would delete entries no one has shipped.

@keys log
@argv group ...ids
@reply ok acked trimmed
log {b}:log; group: the consumer group; ids: the entry ids to acknowledge.
]]
local key, group = KEYS[1], ARGV[1]
local acked = redis.call('XACK', key, group, unpack(ARGV, 2))
local pending = redis.call('XPENDING', key, group)
local minid
if pending[1] > 0 then
  minid = pending[2]
else
  local last
  for _, g in ipairs(redis.call('XINFO', 'GROUPS', key)) do
    for i = 1, #g, 2 do
      if g[i] == 'last-delivered-id' then
        -- only one group reads these streams; a second one would hold its own entries back
        if not last then last = g[i + 1] end
      end
    end
  end
  if last and last ~= '0-0' then
    local dash = string.find(last, '-', 1, true)
    minid = string.sub(last, 1, dash) .. string.format('%d', tonumber(string.sub(last, dash + 1)) + 1)
  end
end
local trimmed = 0
if minid then trimmed = redis.call('XTRIM', key, 'MINID', minid) end
return {acked, trimmed}
