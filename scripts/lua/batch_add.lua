#!lua
--[[
batch_add: issue one code of a batch: the code's own hash holds only the batch id (t); the
definition is the batch's template (see the prelude). The batch thread pipelines one call
per code.

@keys coupon
@argv batch
coupon {b}:c:<CODE>; batch: the batch id.
Returns 1 if the code is the batch's (new, or already issued by it: a resumed job re-issues
its codes), 0 if the code belongs to another coupon (the batch draws another).
]]
if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.call('HGET', KEYS[1], 't') == ARGV[1] and 1 or 0
end
redis.call('HSET', KEYS[1], 't', ARGV[1])
return 1
