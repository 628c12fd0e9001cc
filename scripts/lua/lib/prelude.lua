-- Prelude: scripts/lua/lib/prelude.lua, put after the first line of every script at build
-- time (Redis scripts cannot load code of their own).
--
-- A code issued by a batch (POST /v1/batches) keeps in its own hash only what is its own:
-- "t", the batch id, and whatever scripts have written since (used, bal, status, ...). The
-- definition all codes of the batch share is kept once per bucket in {b}:t:<batch>, in the
-- same hash slot as the code. These functions read a coupon hash through that template; a
-- field of the code's own always wins, and "code" comes from the key.
local function rd_tkey(key, t)
  return string.match(key, '^{[^}]*}') .. ':t:' .. t
end

local function rd_keycode(key)
  return string.sub(key, string.find(key, ':c:', 1, true) + 3)
end

-- HMGET key f1 f2 ... as seen through the batch template.
local function rd_hmget(key, ...)
  local v = redis.call('HMGET', key, 't', ...)
  local t = table.remove(v, 1)
  if not t then return v end
  local names = {...}
  local tv = redis.call('HMGET', rd_tkey(key, t), ...)
  for i = 1, #names do
    if not v[i] then
      if names[i] == 'code' then v[i] = rd_keycode(key) else v[i] = tv[i] end
    end
  end
  return v
end

-- HGETALL key as seen through the batch template (a flat field, value list).
local function rd_hgetall(key)
  local own = redis.call('HGETALL', key)
  local t
  local seen = {}
  for i = 1, #own, 2 do
    seen[own[i]] = true
    if own[i] == 't' then t = own[i + 1] end
  end
  if not t then return own end
  local tv = redis.call('HGETALL', rd_tkey(key, t))
  for i = 1, #tv, 2 do
    if not seen[tv[i]] then
      own[#own + 1] = tv[i]
      own[#own + 1] = tv[i + 1]
    end
  end
  if not seen.code then
    own[#own + 1] = 'code'
    own[#own + 1] = rd_keycode(key)
  end
  return own
end

-- Before HINCRBY on a field the template may hold (a voucher's bal, loaded): copies the
-- template's value into the code's own hash, so the increment starts from it, not from 0.
local function rd_own(key, ...)
  local t = redis.call('HGET', key, 't')
  if not t then return end
  local names = {...}
  local mine = redis.call('HMGET', key, ...)
  local tv = redis.call('HMGET', rd_tkey(key, t), ...)
  for i = 1, #names do
    if not mine[i] and tv[i] then redis.call('HSET', key, names[i], tv[i]) end
  end
end

-- Copies the whole template into the code's own hash (before an edit of a batch code, so
-- that versions and the audit trail's before/after are the code's own from then on).
local function rd_materialize(key)
  local t = redis.call('HGET', key, 't')
  if not t then return end
  local all = rd_hgetall(key)
  redis.call('HSET', key, unpack(all))
end
