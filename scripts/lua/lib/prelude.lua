-- Prelude: scripts/lua/lib/prelude.lua, put after the first line of every script at build
-- time (Redis scripts cannot load code of their own): what more than one script needs.
--
-- ---- coupons through their batch template --------------------------------------------------
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

-- ---- idempotency records (redeem.lua, pay.lua, recharge.lua) ------------------------------
-- A record is "<request fingerprint>\n<the answer as JSON>". rd_replay returns the stored
-- answer marked replayed, {"reused"} for the same key with another request, or nil.
local function rd_replay(key, fp)
  local prev = redis.call('GET', key)
  if not prev then return nil end
  local sep = string.find(prev, '\n', 1, true)
  if string.sub(prev, 1, sep - 1) ~= fp then return {'reused'} end
  local res = cjson.decode(string.sub(prev, sep + 1))
  res[2] = '1'
  return res
end

local function rd_remember(key, fp, res, ttl)
  redis.call('SET', key, fp .. '\n' .. cjson.encode(res), 'EX', ttl)
end

-- ---- uses (redeem.lua, pay.lua) -----------------------------------------------------------
-- A period field only ever moves forward. If it already holds a later period than this
-- request's clock says (a daemon whose clock lags another's, around midnight), that later
-- period stays the current one and this use counts there: a lagging clock can never reopen
-- a day or week that a faster clock has already moved past, so limits stay exact.
local function rd_period(v, idx)
  if not v then return 0, idx end
  local p = string.find(v, ':', 1, true)
  local stored = tonumber(string.sub(v, 1, p - 1))
  if stored > idx then return tonumber(string.sub(v, p + 1)), stored end
  if stored < idx then return 0, idx end
  return tonumber(string.sub(v, p + 1)), idx
end

-- The per-user limits of a use, from the per-user hash ukey ("t:", "d:", "w:" fields).
-- Returns reason, resets_at (ms, string) when a limit is reached, else nil, nil, then the
-- user's counts (total, today, this week) and the day and week the use counts in.
local function rd_user_limits(ukey, user, day, week, off, l_user, l_daily, l_weekly)
  local u = redis.call('HMGET', ukey, 't:' .. user, 'd:' .. user, 'w:' .. user)
  local ut = tonumber(u[1] or '0')
  local ud, uw
  ud, day = rd_period(u[2], day)
  uw, week = rd_period(u[3], week)
  if l_user and ut >= l_user then return 'limit_user_reached' end
  if l_daily and ud >= l_daily then
    return 'limit_user_daily_reached', string.format('%d', (day + 1) * 86400000 - off * 60000)
  end
  if l_weekly and uw >= l_weekly then
    return 'limit_user_weekly_reached',
      string.format('%d', ((week + 1) * 7 - 3) * 86400000 - off * 60000)
  end
  return nil, nil, ut, ud, uw, day, week
end

-- Counts the use for the user (after rd_user_limits said yes).
local function rd_user_count(ukey, user, ut, ud, uw, day, week)
  redis.call('HSET', ukey, 't:' .. user, ut + 1,
    'd:' .. user, string.format('%d:%d', day, ud + 1),
    'w:' .. user, string.format('%d:%d', week, uw + 1))
end

-- What is left of a limit after this use ("" for no limit).
local function rd_left(limit, count)
  if not limit then return '' end
  local r = limit - count - 1
  if r < 0 then r = 0 end
  return string.format('%d', r)
end

-- Undoes one use (a reversal; a payment refunded in full): the coupon's count, the user's
-- total, and the user's day and week counts if the use was counted in the period they still
-- hold (day, week: the record's indexes, as strings); counts never go below zero.
local function rd_give_back(ckey, ukey, user, day, week)
  if tonumber(redis.call('HGET', ckey, 'used') or '0') > 0 then
    redis.call('HINCRBY', ckey, 'used', -1)
  end
  if tonumber(redis.call('HGET', ukey, 't:' .. user) or '0') > 0 then
    redis.call('HINCRBY', ukey, 't:' .. user, -1)
  end
  for _, f in ipairs({{'d:' .. user, day}, {'w:' .. user, week}}) do
    local v = redis.call('HGET', ukey, f[1])
    if v then
      local p = string.find(v, ':', 1, true)
      local n = tonumber(string.sub(v, p + 1))
      if string.sub(v, 1, p - 1) == f[2] and n > 0 then
        redis.call('HSET', ukey, f[1], f[2] .. ':' .. (n - 1))
      end
    end
  end
end
