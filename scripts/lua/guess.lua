#!lua
--[[
guess: a guessing budget (one of a customer address, a user, a session, an API key), as a
GCRA: the budget's key holds its theoretical arrival time (TAT, ms). A failed lookup (unknown
or archived code, wrong kind, disabled) costs one emission interval; a budget of burst
failures at once, refilled at one per interval. Successful uses never come here.

@keys budget limited log
@argv op now_ms interval_ms burst budget code user ip key_id request_id txn extra
@reply ok status allowed retry_ms count
budget {b}:g:<budget>:<digest>; limited {b}:gl:<budget>:<digest>:<minute> (the refused
attempts of now_ms's minute, minute = now_ms / 60000); log {b}:log. op: "peek" (before a
lookup: would one more failure be refused? costs nothing) | "hit" (after a failed lookup:
count it). interval_ms, burst: the budget's settings. budget: ip | user | session | key; code, user, ip, key_id, request_id: the
attempt, for the ledger. txn: an id for a ledger row. extra: refusals of this value in this
minute that the daemon answered itself since its last call (it knew the budget spent and
when it refills: guess.c), counted here with this call.
Returns {"ok", allowed ("1" | "0"), retry_ms, count}: retry_ms is when one more failure will
be allowed (0 when allowed); count is the minute's refusals so far (0 when allowed).
A refused attempt counts in this minute's count; the 1st, 2nd, 4th, 8th ... of a minute
write one ledger row (kind rate_limited, reason rate_limited, details: budget, count,
minute), so a flood of n refusals writes about log2(n) rows, and the minute's largest count
is how many there were (at least half of it is exact). A call that adds several (extra)
writes one row when the count passes a power of two.
]]
local now, t, burst = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local new = tat + t
local over = new - now > burst * t
if not over and ARGV[1] == 'hit' then
  -- kept a minute past the time it is back to a full budget (a TAT behind now counts as
  -- now): clocks of daemons and Redis need not agree to the millisecond
  redis.call('SET', KEYS[1], string.format('%d', new), 'PX', string.format('%d', new - now + 60000))
end
local k = tonumber(ARGV[12]) or 0
if over then k = k + 1 end
local n = 0
if k > 0 then
  n = redis.call('INCRBY', KEYS[2], k)
  if n == k then redis.call('PEXPIRE', KEYS[2], 120000) end
  -- a power of two in (n - k, n]: a sample row with the count so far
  local p = 1
  while p * 2 <= n do p = p * 2 end
  if p > n - k then
    redis.call('XADD', KEYS[3], '*', 'id', ARGV[11], 'ts', ARGV[2], 'kind', 'rate_limited',
      'outcome', 'rejected', 'reason', 'rate_limited', 'code', ARGV[6], 'user', ARGV[7],
      'ip', ARGV[8], 'key', ARGV[9], 'req', ARGV[10], 'budget', ARGV[5],
      'count', string.format('%d', n), 'minute', string.format('%d', math.floor(now / 60000) * 60000))
  end
end
if not over then return {'ok', '1', '0', '0'} end
return {'ok', '0', string.format('%d', new - now - burst * t), string.format('%d', n)}
