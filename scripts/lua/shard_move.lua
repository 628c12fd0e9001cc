#!lua
--[[
shard_move: one step of moving budget between two shards of a hot coupon (rd/shards.h).
A move is: take at the source (its budget goes down and it records "o:<id>" =
"<n>:<destination bucket>:<ms>"), give at the destination (budget up, "n:<id>" recorded),
then done at the source (the record goes). The destination decides a move's fate once:
give and void both look for the other's record first, so a move is either received or
voided, never both. A crash after take loses n until reconcile voids the move at the
destination and returns n at the source; no order of steps ever creates budget.

@keys shard
@argv op id amount peer now_ms
@reply list status budget used ver
shard {b}:s:<CODE>; op: take | give | done | void | return | list; id: the move's
(16 hex digits); amount: take: at most this much ("" = half of the budget, rounded up),
give: how much; peer: the other shard's bucket.
Returns take: what was taken (0: nothing to take); give: "ok" | "dup" (given before) |
"void" (voided first: not given); done: 1; void: "received" | "voided"; return:
"returned" | "none"; list: {"list", budget, used, ver, field, value, ...} for the
outstanding "o:" records.
]]
local op, key, id = ARGV[1], KEYS[1], ARGV[2]
if op == 'take' then
  local b = tonumber(redis.call('HGET', key, 'budget') or '0')
  if b <= 0 then return 0 end
  local n = tonumber(ARGV[3] ~= '' and ARGV[3] or '0')
  if ARGV[3] == '' then n = math.ceil(b / 2) end
  if n > b then n = b end
  if n <= 0 then return 0 end
  redis.call('HINCRBY', key, 'budget', -n)
  redis.call('HSET', key, 'o:' .. id, string.format('%d:%s:%s', n, ARGV[4], ARGV[5]))
  return n
elseif op == 'give' then
  if redis.call('HEXISTS', key, 'v:' .. id) == 1 then return 'void' end
  if redis.call('HEXISTS', key, 'n:' .. id) == 1 then return 'dup' end
  redis.call('HINCRBY', key, 'budget', tonumber(ARGV[3]))
  redis.call('HSET', key, 'n:' .. id, ARGV[5])
  return 'ok'
elseif op == 'done' then
  redis.call('HDEL', key, 'o:' .. id)
  return 1
elseif op == 'void' then
  if redis.call('HEXISTS', key, 'n:' .. id) == 1 then return 'received' end
  redis.call('HSET', key, 'v:' .. id, ARGV[5])
  return 'voided'
elseif op == 'return' then
  local o = redis.call('HGET', key, 'o:' .. id)
  if not o then return 'none' end
  redis.call('HINCRBY', key, 'budget', tonumber(string.match(o, '^(%d+):')))
  redis.call('HDEL', key, 'o:' .. id)
  return 'returned'
elseif op == 'list' then
  local v = redis.call('HMGET', key, 'budget', 'used', 'ver')
  local res = {'list', v[1] or '', v[2] or '', v[3] or ''}
  local cursor = '0'
  repeat
    local page = redis.call('HSCAN', key, cursor, 'MATCH', 'o:*', 'COUNT', 100)
    cursor = page[1]
    for _, x in ipairs(page[2]) do res[#res + 1] = x end
  until cursor == '0'
  return res
end
return redis.error_reply('ERR shard_move: unknown op')
