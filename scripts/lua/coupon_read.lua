#!lua flags=no-writes
--[[
coupon_read: a coupon hash as the scripts see it, through its batch template (see the
prelude): GET /v1/coupons/{code}, the voucher balance, PATCH's read and redeemctl reconcile.

@keys coupon
@argv ...fields
coupon {b}:c:<CODE>; fields: field names, or none for all fields.
Returns HGETALL's flat field, value list (no fields: empty), or HMGET's values
]]
if #ARGV == 0 then return rd_hgetall(KEYS[1]) end
return rd_hmget(KEYS[1], unpack(ARGV))
