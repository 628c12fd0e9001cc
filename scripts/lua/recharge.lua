#!lua
--[[
recharge: add value to a voucher, up to the configured maximum balance (admin).

@keys coupon idem idem_v1 log idem_1 idem_2
@argv now_ms txn amount max_balance currency fp idem_field idem_slice_ms client_ip key_id request_id idem_key code
@reply ok status replayed id amount balance_after loaded_after
@reply rejected status replayed reason balance max
@reply reused status
coupon {b}:c:<CODE> (the voucher), idem, idem_v1, idem_1 and idem_2 the idempotency
records (as redeem.lua), log {b}:log.
currency "" = the voucher's. {"reused"}: the idempotency key was used with another request.
]]
local amount, max = tonumber(ARGV[3]), tonumber(ARGV[4])
local prev = rd_replay(KEYS[2], KEYS[3], ARGV[7], ARGV[6], KEYS[5], KEYS[6])
if prev then return prev end
local c = rd_hmget(KEYS[1], 'kind', 'bal', 'currency', 'expires_at', 'campaign')

local function log(outcome, reason, bal)
  redis.call('XADD', KEYS[4], '*', 'id', ARGV[2], 'ts', ARGV[1], 'kind', 'recharge',
    'outcome', outcome, 'reason', reason, 'code', ARGV[13], 'campaign', c[5] or '',
    'paid', outcome == 'accepted' and ARGV[3] or '', 'amount', ARGV[3],
    'balance', bal or '', 'currency', c[3] or ARGV[5],
    'ip', ARGV[9], 'key', ARGV[10], 'req', ARGV[11], 'idem', ARGV[12])
end
local function reject(reason, bal)
  local res = {'rejected', '0', reason, bal or '', ARGV[4]}
  if c[1] then -- nothing is remembered for a code that does not exist
    rd_remember(KEYS[2], ARGV[7], ARGV[6], res, tonumber(ARGV[8]), tonumber(ARGV[1]))
  end
  log('rejected', reason, bal)
  return res
end

if not c[1] then return reject('coupon_not_found') end
if c[1] ~= 'voucher' then return reject('kind_mismatch') end
local expires = tonumber(c[4] or '')
if expires and tonumber(ARGV[1]) >= expires then return reject('coupon_expired', c[2]) end
if ARGV[5] ~= '' and ARGV[5] ~= c[3] then return reject('currency_mismatch', c[2]) end
local bal = tonumber(c[2] or '0')
if bal + amount > max then return reject('balance_limit_exceeded', c[2]) end
-- money goes to Redis as integer strings: a Lua number may print as 1e+15
rd_own(KEYS[1], 'bal', 'loaded')
local after = redis.call('HINCRBY', KEYS[1], 'bal', ARGV[3])
local loaded = redis.call('HINCRBY', KEYS[1], 'loaded', ARGV[3])
local res = {'ok', '0', ARGV[2], ARGV[3], string.format('%d', after), string.format('%d', loaded)}
rd_remember(KEYS[2], ARGV[7], ARGV[6], res, tonumber(ARGV[8]), tonumber(ARGV[1]))
log('accepted', '', string.format('%d', after))
return res
