#!lua
--[[
share: record that a code was handed to a customer (channel, recipient, time) and log it.
The coupon keeps a share count and the last share time, so listings can tell shared from
unshared codes; the ledger keeps every share.

@keys coupon log
@argv now_ms txn channel recipient client_ip key_id request_id code
@reply ok status shares expires_at utc_off
@reply rejected status reason
coupon {b}:c:<CODE>, log {b}:log. recipient "" for none; expires_at "" for none.
rejected: coupon_not_found | coupon_disabled | coupon_expired
]]
local c = rd_hmget(KEYS[1], 'code', 'status', 'expires_at', 'utc_off', 'campaign')
local function log(outcome, reason)
  redis.call('XADD', KEYS[2], '*', 'id', ARGV[2], 'ts', ARGV[1], 'kind', 'share',
    'outcome', outcome, 'reason', reason, 'code', ARGV[8], 'campaign', c[5] or '',
    'user', ARGV[4], 'ip', ARGV[5], 'key', ARGV[6], 'req', ARGV[7],
    'after', cjson.encode({channel = ARGV[3], recipient = ARGV[4]}))
end
if not c[1] then
  log('rejected', 'coupon_not_found')
  return {'rejected', 'coupon_not_found'}
end
if c[2] == 'disabled' then
  log('rejected', 'coupon_disabled')
  return {'rejected', 'coupon_disabled'}
end
local expires = tonumber(c[3] or '')
if expires and tonumber(ARGV[1]) >= expires then
  log('rejected', 'coupon_expired')
  return {'rejected', 'coupon_expired'}
end
local shares = redis.call('HINCRBY', KEYS[1], 'shares', 1)
redis.call('HSET', KEYS[1], 'shared_at', ARGV[1])
log('accepted', '')
return {'ok', string.format('%d', shares), c[3] or '', c[4] or '0'}
