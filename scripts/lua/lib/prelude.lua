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
-- A record is one field of a hash per bucket and time slice, {b}:i:<slice ms>:<slice>, never
-- a key of its own. The field is a 12-byte digest of (code, API key, Idempotency-Key); the
-- value starts with 6 bytes of the request's fingerprint. A slice is half the records'
-- lifetime (idempotency_ttl_s), and its hash expires as a whole a lifetime after the slice
-- ends: a record lives between one and one and a half lifetimes, and a lookup reads this
-- slice and the two before it (keys idem_1 and idem_2 of the script: the daemon names all
-- three, so no key is built here). After the fingerprint comes either the answer itself, as
-- JSON (refusals, recharges), or, for an accepted use, its outbox entry's stream id (6 bytes
-- of time, 2 of sequence): the answer is rebuilt from the entry while it waits to be
-- shipped, and by the daemon from the ledger after; the id's tag comes from the same digest
-- as the field, so it is not stored. A value of 14 bytes is thus an accepted use, which
-- costs Redis about 75 bytes in a large hash (a dict entry and two 16-byte strings) and 35
-- in a small one (listpack).
local function rd_idem_get(ikey, field, prev1, prev2)
  return redis.call('HGET', ikey, field) or redis.call('HGET', prev1, field) or
    redis.call('HGET', prev2, field)
end

-- Before idempotency records were fields (redeemd 0.1): a string key per record, "<hex
-- fingerprint>\n<answer JSON>". Still honoured until the last of them expires.
local function rd_replay_v1(legacy, fp)
  local prev = redis.call('GET', legacy)
  if not prev then return nil end
  local hex = string.gsub(fp, '.', function(ch) return string.format('%02x', string.byte(ch)) end)
  local sep = string.find(prev, '\n', 1, true)
  if string.sub(prev, 1, sep - 1) ~= hex then return {'reused'} end
  local res = cjson.decode(string.sub(prev, sep + 1))
  res[2] = '1'
  if res[1] == 'ok' and #res == 21 then
    -- redeem.lua's answer then also held the coupon's currency and the period indexes
    return {res[1], res[2], res[3], res[4], res[5], res[6], res[7], res[8], res[10], res[11],
      res[12], res[13], res[14], res[15], res[16], res[17], res[18]}
  end
  return res
end

-- nil (no record), {'reused'} (the key was used for another request), the stored answer
-- marked replayed, or {'use', sid} for an accepted use (the caller rebuilds its answer).
-- legacy: the 0.1 record's key, or false for a coupon marked "v2" (see rd_user_get).
local function rd_replay(ikey, legacy, field, fp, prev1, prev2)
  local v = rd_idem_get(ikey, field, prev1, prev2)
  if not v then return legacy and rd_replay_v1(legacy, fp) or nil end
  if string.sub(v, 1, 6) ~= string.sub(fp, 1, 6) then return {'reused'} end
  if #v == 14 then
    local ms, seq = struct.unpack('>I6I2', v, 7)
    return {'use', string.format('%d-%d', ms, seq)}
  end
  local res = cjson.decode(string.sub(v, 7))
  if res[1] == 'use' then return res end
  res[2] = '1'
  return res
end

-- Writes a record into this slice's hash; the hash's expiry is set by its first record.
-- (The slice is now's: the daemon named the key after it.)
local function rd_remember_raw(ikey, field, fp, answer, slice_ms, now)
  redis.call('HSET', ikey, field, string.sub(fp, 1, 6) .. answer)
  local k = math.floor(now / slice_ms)
  redis.call('PEXPIRE', ikey, string.format('%d', (k + 3) * slice_ms - now), 'NX')
end

local function rd_remember(ikey, field, fp, res, slice_ms, now)
  rd_remember_raw(ikey, field, fp, cjson.encode(res), slice_ms, now)
end

-- The record of an accepted use: where its outbox entry is.
local function rd_remember_use(ikey, field, fp, sid, slice_ms, now)
  local ms, seq = string.match(sid, '^(%d+)-(%d+)$')
  ms, seq = tonumber(ms), tonumber(seq)
  if seq < 65536 then
    rd_remember_raw(ikey, field, fp, struct.pack('>I6I2', ms, seq), slice_ms, now)
  else -- (a 65,536th entry in one millisecond of one bucket: possible, never seen)
    rd_remember(ikey, field, fp, {'use', sid}, slice_ms, now)
  end
end

-- ---- use ids (redeem.lua, pay.lua) ----------------------------------------------------------
-- A use's id names its outbox entry, "rdm_<bucket>_<stream id>_<tag>", so that a reversal, a
-- replay or a read finds the entry while it waits to be shipped and the ledger row after,
-- with nothing kept in Redis per use. txn is the daemon's id for the call ("rdm_<bucket>_"
-- and 20 symbols): its first 6 symbols are the tag, drawn by the daemon from the digest of
-- the Idempotency-Key (so a replay has the same) and unguessable without the key.
local function rd_use_tag(txn)
  return string.sub(txn, 10, 15)
end

local function rd_use_id(txn, sid)
  return string.sub(txn, 1, 9) .. sid .. '_' .. rd_use_tag(txn)
end

-- A use's outbox entry (redeem.lua, pay.lua) is one field, "u": these values in this order,
-- joined by '\0' (rd_use_entry). The list is RD_ENTRY_FIELDS in rd/ledger.h, which the
-- shipper decodes with; a unit test holds the two equal. Other entries keep a field each.
-- One concatenation of 49 operands copies each value once; table.concat of a vararg table
-- cost a table and a buffer that merges its pieces as it goes (3.6 % of Redis' time per
-- redemption in a profile, bench/README.md).
local function rd_use_entry(v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14, v15,
                            v16, v17, v18, v19, v20, v21, v22, v23, v24, v25)
  return v1 .. '\0' .. v2 .. '\0' .. v3 .. '\0' .. v4 .. '\0' .. v5 .. '\0' ..
    v6 .. '\0' .. v7 .. '\0' .. v8 .. '\0' .. v9 .. '\0' .. v10 .. '\0' ..
    v11 .. '\0' .. v12 .. '\0' .. v13 .. '\0' .. v14 .. '\0' .. v15 .. '\0' ..
    v16 .. '\0' .. v17 .. '\0' .. v18 .. '\0' .. v19 .. '\0' .. v20 .. '\0' ..
    v21 .. '\0' .. v22 .. '\0' .. v23 .. '\0' .. v24 .. '\0' .. v25
end

-- The fields of one outbox entry (a table), or nil when it is no longer in the stream.
local function rd_entry(log, sid)
  local e = redis.call('XRANGE', log, sid, sid)
  if #e == 0 then return nil end
  local f, kv = {}, e[1][2]
  for i = 1, #kv, 2 do f[kv[i]] = kv[i + 1] end
  if f.u then
    -- entry fields: tag ts kind outcome reason code campaign user order amount currency dtype dvalue dmax min_order day week left paid balance ip key req idem cx
    local names = {'tag', 'ts', 'kind', 'outcome', 'reason', 'code', 'campaign', 'user',
      'order', 'amount', 'currency', 'dtype', 'dvalue', 'dmax', 'min_order', 'day', 'week',
      'left', 'paid', 'balance', 'ip', 'key', 'req', 'idem', 'cx'}
    local v, i = f.u, 1
    for k = 1, #names do
      local j = string.find(v, '\0', i, true)
      f[names[k]] = string.sub(v, i, (j or #v + 1) - 1)
      if not j then break end
      i = j + 1
    end
  end
  return f
end

-- The remaining counts after a use, as one entry field: "total,user,daily,weekly" ("" none).
local function rd_split4(v)
  local t, u, d, w = string.match(v or ',,,', '^([^,]*),([^,]*),([^,]*),([^,]*)$')
  return t or '', u or '', d or '', w or ''
end

-- ---- uses (redeem.lua, pay.lua) -----------------------------------------------------------
-- A user's counts on a coupon are one field of {b}:u:<CODE>, "u:<user>", holding
-- "<total>:<day>:<uses that day>:<week>:<uses that week>" (day and week: indexes in the
-- coupon's time zone). redeemd 0.1 kept three fields, "t:<user>" (total), "d:<user>" and
-- "w:<user>" ("<index>:<count>"): they are read while they exist and replaced by the one
-- field at the user's next change. Only values of their shape count as theirs, and the "u:"
-- prefix keeps a new field from ever being taken for an old one.
-- A coupon created by this version carries "v2" = 1 (coupon_write.lua, a batch's template,
-- a hot coupon's shards): no 0.1 field or record can exist for it, so neither is looked up
-- (the three fields cost three lookups in a hash of every user; bench/README.md).
-- Returns the total, the day and its count, the week and its count (numbers; nil where
-- none), and the old fields found (or false).
local function rd_user_get(ukey, user, v2)
  if v2 then
    local t, d, dn, w, wn = string.match(redis.call('HGET', ukey, 'u:' .. user) or '',
      '^(%d+):(%d+):(%d+):(%d+):(%d+)$')
    return tonumber(t or '0'), tonumber(d), tonumber(dn), tonumber(w), tonumber(wn), false
  end
  local u = redis.call('HMGET', ukey, 'u:' .. user, 't:' .. user, 'd:' .. user, 'w:' .. user)
  local t, d, dn, w, wn = string.match(u[1] or '', '^(%d+):(%d+):(%d+):(%d+):(%d+)$')
  if t then return tonumber(t), tonumber(d), tonumber(dn), tonumber(w), tonumber(wn), false end
  local lt = string.match(u[2] or '', '^%d+$')
  local ld, ldn = string.match(u[3] or '', '^(%d+):(%d+)$')
  local lw, lwn = string.match(u[4] or '', '^(%d+):(%d+)$')
  return tonumber(lt or '0'), tonumber(ld), tonumber(ldn), tonumber(lw), tonumber(lwn),
    (lt or ld or lw) and {lt, ld, lw} or false
end

local function rd_user_put(ukey, user, t, day, dn, week, wn, legacy)
  redis.call('HSET', ukey, 'u:' .. user,
    string.format('%d:%d:%d:%d:%d', t, day, dn, week, wn))
  if legacy then
    local old = {}
    for i, p in ipairs({'t:', 'd:', 'w:'}) do
      if legacy[i] then old[#old + 1] = p .. user end
    end
    redis.call('HDEL', ukey, unpack(old))
  end
end

-- A period count only ever moves forward. If it already holds a later period than this
-- request's clock says (a daemon whose clock lags another's, around midnight), that later
-- period stays the current one and this use counts there: a lagging clock can never reopen
-- a day or week that a faster clock has already moved past, so limits stay exact.
-- (stored, n: the period a count holds and its count, nil for none; idx: this use's.)
local function rd_period(stored, n, idx)
  if not stored or stored < idx then return 0, idx end
  return n, stored
end

-- The per-user limits of a use. Returns reason, resets_at (ms, string) when a limit is
-- reached, else nil, nil, then the user's counts (a table for rd_user_count) and the day
-- and week the use counts in.
local function rd_user_limits(ukey, user, day, week, off, l_user, l_daily, l_weekly, v2)
  local ut, dp, dn, wp, wn, legacy = rd_user_get(ukey, user, v2)
  local ud, uw
  ud, day = rd_period(dp, dn, day)
  uw, week = rd_period(wp, wn, week)
  if l_user and ut >= l_user then return 'limit_user_reached' end
  if l_daily and ud >= l_daily then
    return 'limit_user_daily_reached', string.format('%d', (day + 1) * 86400000 - off * 60000)
  end
  if l_weekly and uw >= l_weekly then
    return 'limit_user_weekly_reached',
      string.format('%d', ((week + 1) * 7 - 3) * 86400000 - off * 60000)
  end
  return nil, nil, {ut, ud, uw, legacy}, day, week
end

-- Counts the use for the user (after rd_user_limits said yes with counts u).
local function rd_user_count(ukey, user, u, day, week)
  rd_user_put(ukey, user, u[1] + 1, day, u[2] + 1, week, u[3] + 1, u[4])
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
-- hold (day, week: the use's indexes, as strings); counts never go below zero.
-- A hot coupon's shard gets the use back into its budget: budget + used stays constant.
local function rd_give_back(ckey, ukey, user, day, week)
  if tonumber(redis.call('HGET', ckey, 'used') or '0') > 0 then
    redis.call('HINCRBY', ckey, 'used', -1)
    if redis.call('HEXISTS', ckey, 'budget') == 1 then
      redis.call('HINCRBY', ckey, 'budget', 1)
    end
  end
  local ut, dp, dn, wp, wn, legacy = rd_user_get(ukey, user)
  if ut == 0 and not dp and not wp then return end
  local function back(i, n, idx)
    if not i then return 0, 0 end
    if string.format('%d', i) == idx and n > 0 then n = n - 1 end
    return i, n
  end
  local d, w
  d, dn = back(dp, dn, day)
  w, wn = back(wp, wn, week)
  if ut > 0 then ut = ut - 1 end
  rd_user_put(ukey, user, ut, d, dn, w, wn, legacy)
end

-- ---- what was given back of a use (use_read.lua, reverse.lua, refund.lua) ------------------
-- {b}:x:<use id>, the use's mark, holds what reversals and refunds gave back: status
-- (reversed, refunded, partially_refunded), at and by (time and id of the last give-back),
-- refunded (a payment's refunded total), idem (the reversal's Idempotency-Key) and
-- "ri:<key>" (a refund's answer, for replays). The first give-back writes it; it is kept
-- until the use's reversal window has closed, after which nothing can be given back, so a
-- use that was never reversed costs nothing here. redeemd 0.1 kept the same in a record per
-- use ({b}:r:<id>), which is read while it lasts.
-- Returns {status, at, by, refunded, idem} (false where none) and the key that held them.
local function rd_mark_get(mark, legacy)
  local m = redis.call('HMGET', mark, 'status', 'at', 'by', 'refunded', 'idem')
  if m[1] then return m, mark end
  local r = redis.call('HMGET', legacy, 'status', 'reversed_at', 'reversal_id', 'refunded',
    'reversal_idem')
  if r[1] and r[1] ~= 'active' then return r, legacy end
  return {false, false, false, false, false}, nil
end

-- Writes fields of a use's mark; it lasts a day past the use's reversal window (a day for
-- the clocks of other daemons), counted from now.
local function rd_mark_put(mark, created, window, now, ...)
  redis.call('HSET', mark, ...)
  redis.call('PEXPIRE', mark, string.format('%d', created + window - now + 86400000))
end
