#!lua flags=no-writes
--[[
use_read: a use (a redemption or a voucher payment) as far as Redis knows it: its facts from
its outbox entry while that waits to be shipped (or from the record redeemd 0.1 kept per
use), and what has been given back of it (its mark, see the prelude). Reversals, refunds and
GET /v1/redemptions/{id} start here; a use whose facts are no longer in Redis is read from
the ledger.

@keys log mark record_v1
@argv sid tag
@reply found status given at by refunded kind code user_id created_at amount currency day week campaign order_id balance_after dtype dvalue dmax min_order
@reply ledger status given at by refunded
@reply missing status
log {b}:log, mark {b}:x:<id>, record_v1 {b}:r:<id>; sid, tag: the id's stream id and tag
("" for an id of redeemd 0.1, whose facts are in record_v1 or the ledger).
found: amount is a redemption's order amount or a payment's amount; given: "" (nothing
given back), reversed, refunded or partially_refunded. ledger: read the facts from the
ledger. missing: the id names an entry that is not an accepted use.
]]
local m = rd_mark_get(KEYS[2], KEYS[3])
local given = {m[1] or '', m[2] or '', m[3] or '', m[4] or ''}
local function found(kind, f)
  return {'found', given[1], given[2], given[3], given[4], kind, f.code, f.user, f.ts,
    f.amount, f.currency, f.day or '', f.week or '', f.campaign or '', f.order or '',
    f.balance or '', f.dtype or '', f.dvalue or '', f.dmax or '', f.min_order or ''}
end

if ARGV[1] == '' then
  local r = redis.call('HGETALL', KEYS[3])
  if #r == 0 then return {'ledger', given[1], given[2], given[3], given[4]} end
  local f = {}
  for i = 1, #r, 2 do f[r[i]] = r[i + 1] end
  f.ts = f.created_at
  f.balance = f.balance_after
  if f.kind == 'pay' then
    f.amount = f.paid
    return found('pay', f)
  end
  return found('redeem', f)
end

local e = rd_entry(KEYS[1], ARGV[1])
if not e then return {'ledger', given[1], given[2], given[3], given[4]} end
if e.tag ~= ARGV[2] or e.outcome ~= 'accepted' or (e.kind ~= 'redeem' and e.kind ~= 'pay') then
  return {'missing'}
end
if e.kind == 'pay' then e.amount = e.paid end
return found(e.kind, e)
