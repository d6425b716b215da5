"""The Lua scripts the Redis store runs on the server: one call per announce, per swarm
sweep step, per torrent registration and per sweep claim.

Every torrent's keys carry its info_hash (hex) as a Redis Cluster hash tag, so a script
that touches one torrent touches one slot. The store-wide keys (the torrent registry, the
sweep cursor, the totals, the UDP secret) share a tag of their own.

A torrent's keys share one prefix, ``<namespace>:{<info_hash hex>}:``; the scripts are
given the first (``t``) and name the others from it, on the same slot (fewer arguments
to send make the announce cheaper for the client):

1. ``t``: a hash with ``seen`` (the last announce, in whole seconds) and ``done`` (its
   completed count);
2. ``z``: a sorted set of every peer's compact address by last announce (the expiry
   order; IPv4 and IPv6 addresses differ in length, so one set holds both);
3. to 6. ``s4``, ``l4``, ``s6``, ``l6``: seeders and leechers of each family, hashes from
   compact address to the peer's record: its 20-byte peer id, then ``"key flag uploaded
   downloaded"`` in decimal (``flag`` 1 once the entry's completion was counted; the
   totals kept as the client's decimal text, so nothing is rounded);
7. and 8. ``i4``, ``i6``: hashes from peer id to the addresses (concatenated, oldest first)
   of the entries holding it, for the BEP 7 key rule and the dual-stack rules;
9. and 10. ``n4``, ``n6``: hashes from IP address to its number of entries (the per-IP cap).

The identity rules are those of :mod:`shoal.engine.swarm` (the reference): an entry is its
address; from its own address with its own peer id it is served whatever key it sends and
keeps the key it registered; from another address only that registered key moves it; a
keyless entry never adopts a key; another peer id at an entry's address replaces it.
"""

from __future__ import annotations

_COMMON = r"""
local T = KEYS[1]
local base = string.sub(T, 1, -2)
local Z = base .. 'z'
local S = {[6] = base .. 's4', [18] = base .. 's6'}
local L = {[6] = base .. 'l4', [18] = base .. 'l6'}
local I = {[6] = base .. 'i4', [18] = base .. 'i6'}
local N = {[6] = base .. 'n4', [18] = base .. 'n6'}

-- The record of the entry at address a, and its role (2 seeder, 1 leecher, 0 none).
local function find(a)
  local w = #a
  local r = redis.call('HGET', S[w], a)
  if r then return r, 2 end
  r = redis.call('HGET', L[w], a)
  if r then return r, 1 end
  return nil, 0
end

-- key, flag, uploaded, downloaded of a record (as text)
local function fields(r)
  return string.match(r, '^(%d+) (%d) (%d+) (%d+)$', 21)
end

local function unindex(a, pid)
  local w = #a
  local list = redis.call('HGET', I[w], pid)
  if list then
    for p = 1, #list, w do
      if string.sub(list, p, p + w - 1) == a then
        list = string.sub(list, 1, p - 1) .. string.sub(list, p + w)
        if list == '' then
          redis.call('HDEL', I[w], pid)
        else
          redis.call('HSET', I[w], pid, list)
        end
        break
      end
    end
  end
  local ip = string.sub(a, 1, w - 2)
  if redis.call('HINCRBY', N[w], ip, -1) <= 0 then
    redis.call('HDEL', N[w], ip)
  end
end

local function remove(a, r, role)
  local w = #a
  if role == 2 then redis.call('HDEL', S[w], a) else redis.call('HDEL', L[w], a) end
  redis.call('ZREM', Z, a)
  unindex(a, string.sub(r, 1, 20))
end

local function add(a, pid, role, r, now)
  local w = #a
  if role == 2 then redis.call('HSET', S[w], a, r) else redis.call('HSET', L[w], a, r) end
  redis.call('ZADD', Z, now, a)
  local list = redis.call('HGET', I[w], pid)
  redis.call('HSET', I[w], pid, (list or '') .. a)
  redis.call('HINCRBY', N[w], string.sub(a, 1, w - 2), 1)
end

-- Remove up to limit peers last seen before `before` (exclusive); return how many.
local function expire(before, limit)
  local stale = redis.call('ZRANGEBYSCORE', Z, '-inf', '(' .. before, 'LIMIT', 0, limit)
  for _, a in ipairs(stale) do
    local r, role = find(a)
    if r then remove(a, r, role) else redis.call('ZREM', Z, a) end
  end
  return #stale
end

local function counts()
  return redis.call('HLEN', S[6]) + redis.call('HLEN', S[18]),
         redis.call('HLEN', L[6]) + redis.call('HLEN', L[18])
end
"""

ANNOUNCE = _COMMON + r"""
-- ARGV: the numbers packed by shoal.storage.redis.ANNOUNCE_ARGS, the compact address,
-- the peer id, and the uploaded and downloaded totals in decimal.
local now, before, key, flags, numwant, max_peers, max_ip, lazy =
  struct.unpack('>I4I4I4BI2I4I4B', ARGV[1])
key = tostring(key)
local seeder = flags % 2 == 1
local mixed = math.floor(flags / 2) % 2 == 1
local with_ids = math.floor(flags / 4) % 2 == 1
local full = math.floor(flags / 8) % 2 == 1
local event = math.floor(flags / 16)
local addr, pid, up, down = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local w = #addr
local ow = 24 - w
local stopped = event == 3
local s0, l0 = 0, 0
local new_torrent = 0

-- One string (shoal.storage.redis.ANNOUNCE_REPLY, then the peers, the peer ids and the
-- previous totals): status, seeders, leechers, completed count, role before, role after,
-- completed now, change in seeders, change in leechers, new torrent, the lengths of
-- peers4, peers6, ids4 and ids6, then those four, then "uploaded downloaded" as they were.
-- A flat string costs the client one parse instead of sixteen replies.
local function reply(status, p4, p6, i4, i6, rb, ra, done, pu, pd)
  local s, l = counts()
  return struct.pack('>BI4I4I4BBBi4i4BI4I4I4I4', status, s, l,
                     tonumber(redis.call('HGET', T, 'done') or '0'), rb, ra, done,
                     s - s0, l - l0, new_torrent, #p4, #p6, #i4, #i6)
         .. p4 .. p6 .. i4 .. i6 .. pu .. ' ' .. pd
end
local function nothing(status) return reply(status, '', '', '', '', 0, 0, 0, '0', '0') end

if redis.call('EXISTS', T) == 0 then
  if stopped then return nothing(0) end
  if full then return nothing(1) end
  new_torrent = 1
  redis.call('HSET', T, 'done', 0)
else
  s0, l0 = counts()
end
redis.call('HSET', T, 'seen', now)
if lazy > 0 then expire(before, lazy) end

local function loopback(a)
  if #a == 6 then return string.byte(a, 1) == 127 end
  return string.sub(a, 1, 16) == string.rep('\0', 15) .. '\1'
end

-- Whether the same client's completion was counted over the other address family.
local function completed_elsewhere()
  local list = redis.call('HGET', I[ow], pid)
  if not list then return false end
  for p = 1, #list, ow do
    local r = find(string.sub(list, p, p + ow - 1))
    if r then
      local _, f = fields(r)
      if f == '1' then return true end
    end
  end
  return false
end

local rec, role = find(addr)
local role_before, pu, pd = 0, '0', '0'
local regkey, flag = key, 0
local in_place = false  -- the entry stays at this address (update its record there)
if rec then
  if string.sub(rec, 1, 20) == pid then
    -- From its own address no key is asked; the registered key is kept.
    local k, f, u, d = fields(rec)
    role_before, pu, pd = role, u, d
    if stopped then
      remove(addr, rec, role)
      return reply(0, '', '', '', '', role, 0, 0, u, d)
    end
    regkey, flag, in_place = k, tonumber(f), true
  elseif stopped then
    return nothing(0)  -- not this client's entry: a stop removes only its own
  else
    remove(addr, rec, role)  -- a client restarted at this address takes the entry
  end
else
  local moved, mrec, mrole = nil, nil, 0
  if key ~= '0' then
    local list = redis.call('HGET', I[w], pid)
    if list then
      for p = 1, #list, w do
        local a = string.sub(list, p, p + w - 1)
        local r, ro = find(a)
        if r and fields(r) == key then
          moved, mrec, mrole = a, r, ro
          break
        end
      end
    end
  end
  if moved then
    -- The registered key proves it is the same client, now at a new address.
    local _, f, u, d = fields(mrec)
    role_before, pu, pd = mrole, u, d
    remove(moved, mrec, mrole)
    if stopped then return reply(0, '', '', '', '', mrole, 0, 0, u, d) end
    flag = tonumber(f)
  elseif stopped then
    return nothing(0)
  else
    local s, l = counts()
    if s + l >= max_peers then return nothing(2) end
    if not loopback(addr) and
        tonumber(redis.call('HGET', N[w], string.sub(addr, 1, w - 2)) or '0') >= max_ip then
      return nothing(3)
    end
  end
end

local completing = event == 1 and seeder
local completed = 0
if completing and flag == 0 and not completed_elsewhere() then
  completed = 1
  redis.call('HINCRBY', T, 'done', 1)
end
if completing then flag = 1 end
local role_after = seeder and 2 or 1
local newrec = pid .. regkey .. ' ' .. flag .. ' ' .. up .. ' ' .. down
if in_place then
  if role ~= role_after then
    if role == 2 then redis.call('HDEL', S[w], addr) else redis.call('HDEL', L[w], addr) end
  end
  if role_after == 2 then
    redis.call('HSET', S[w], addr, newrec)
  else
    redis.call('HSET', L[w], addr, newrec)
  end
  redis.call('ZADD', Z, now, addr)
else
  add(addr, pid, role_after, newrec, now)
end

-- Up to count peers of hash h (avail of them pickable, inside of the skipped ones in it).
local function take(h, count, avail, inside, skip, out, ids)
  if count <= 0 or avail <= 0 then return 0 end
  local got = 0
  if not with_ids then  -- the addresses alone (half the reply to turn into Lua strings)
    local found
    if count >= avail then
      found = redis.call('HKEYS', h)  -- at most count + inside entries
    else
      found = redis.call('HRANDFIELD', h, count + inside)
    end
    for i = 1, #found do
      if got >= count then break end
      local a = found[i]
      if not skip[a] then
        out[#out + 1] = a
        got = got + 1
      end
    end
    return got
  end
  local flat
  if count >= avail then
    flat = redis.call('HGETALL', h)  -- at most count + inside entries
  else
    flat = redis.call('HRANDFIELD', h, count + inside, 'WITHVALUES')
  end
  for i = 1, #flat, 2 do
    if got >= count then break end
    local a = flat[i]
    if not skip[a] then
      out[#out + 1] = a
      ids[#ids + 1] = string.sub(flat[i + 1], 1, 20)
      got = got + 1
    end
  end
  return got
end

-- Up to count peers of family fw, never one in skip: leechers only for a seeder or a
-- paused peer, else seeders and leechers in proportion, seeders first.
local function pick(fw, count, skip)
  local out, ids = {}, {}
  if count <= 0 then return out, ids end
  local in_s, in_l = 0, 0
  for a in pairs(skip) do
    if redis.call('HEXISTS', S[fw], a) == 1 then in_s = in_s + 1
    elseif redis.call('HEXISTS', L[fw], a) == 1 then in_l = in_l + 1 end
  end
  local n_leech = redis.call('HLEN', L[fw]) - in_l
  local take_leech = count
  if not seeder and event ~= 4 then
    local n_seed = redis.call('HLEN', S[fw]) - in_s
    local take_seed = n_seed
    if n_seed + n_leech <= count then
      take_leech = n_leech
    else
      take_seed = math.min(n_seed, math.floor(count * n_seed / (n_seed + n_leech) + 0.5))
      take_leech = count - take_seed
    end
    take(S[fw], take_seed, n_seed, in_s, skip, out, ids)
  end
  take(L[fw], take_leech, n_leech, in_l, skip, out, ids)
  return out, ids
end

local own, own_ids = pick(w, numwant, {[addr] = true})
local other, other_ids = {}, {}
if mixed and numwant - #own > 0 then
  -- The same client over the other family is still the requester.
  local skip = {}
  local list = redis.call('HGET', I[ow], pid)
  if list then
    for p = 1, #list, ow do skip[string.sub(list, p, p + ow - 1)] = true end
  end
  other, other_ids = pick(ow, numwant - #own, skip)
end
own, own_ids = table.concat(own), table.concat(own_ids)
other, other_ids = table.concat(other), table.concat(other_ids)
if w == 18 then
  return reply(0, other, own, other_ids, own_ids, role_before, role_after, completed, pu, pd)
end
return reply(0, own, other, own_ids, other_ids, role_before, role_after, completed, pu, pd)
"""

SWEEP = _COMMON + r"""
-- One torrent of a sweep step: expire up to ARGV[2] silent peers, and drop the torrent
-- when it is left empty and untouched since ARGV[1]. Returns the seeders and leechers
-- removed, 1 when the torrent was dropped (2 when it was already gone), and the completed
-- count of a dropped torrent.
local before, limit = ARGV[1], tonumber(ARGV[2])
if redis.call('EXISTS', T) == 0 then return {0, 0, 2, 0} end
local s0, l0 = counts()
expire(before, limit)
local s, l = counts()
if s + l == 0 and tonumber(redis.call('HGET', T, 'seen') or '0') < tonumber(before) then
  local done = tonumber(redis.call('HGET', T, 'done') or '0')
  redis.call('DEL', T, Z, S[6], L[6], S[18], L[18], I[6], I[18], N[6], N[18])
  return {s0, l0, 1, done}
end
return {s0 - s, l0 - l, 0, 0}
"""

COUNTS = r"""
-- The scrape counts of the torrents KEYS (their ``t`` keys), on one Redis (not a Cluster:
-- there the keys span slots). One string, for each torrent: present (0 or 1), seeders,
-- leechers, completed count (shoal.storage.redis.COUNTS_REPLY).
local out = {}
for i, T in ipairs(KEYS) do
  local done = redis.call('HGET', T, 'done')
  if done then
    local base = string.sub(T, 1, -2)
    out[i] = struct.pack('>BI4I4I4', 1,
                         redis.call('HLEN', base .. 's4') + redis.call('HLEN', base .. 's6'),
                         redis.call('HLEN', base .. 'l4') + redis.call('HLEN', base .. 'l6'),
                         tonumber(done))
  else
    out[i] = struct.pack('>BI4I4I4', 0, 0, 0, 0)
  end
end
return table.concat(out)
"""

REGISTER = r"""
-- Add a torrent to the registry (KEYS[1], scored by arrival through the counter KEYS[2])
-- unless listed; return how many torrents are listed.
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('ZADD', KEYS[1], redis.call('INCR', KEYS[2]), ARGV[1])
end
return redis.call('ZCARD', KEYS[1])
"""

CLAIM = r"""
-- Claim the next ARGV[1] torrents of the registry (KEYS[1]) for one sweep step, after the
-- shared cursor KEYS[2]: nodes sweeping at once take different torrents. A short claim
-- ends the pass and starts the cursor again. Returns {finished, hash, hash, ...}.
local n = tonumber(ARGV[1])
local pos = redis.call('GET', KEYS[2]) or '0'
local found = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. pos, '+inf', 'WITHSCORES',
                         'LIMIT', 0, n)
local out = {0}
for i = 1, #found, 2 do out[#out + 1] = found[i] end
if #found < 2 * n then
  redis.call('SET', KEYS[2], '0')
  out[1] = 1
else
  redis.call('SET', KEYS[2], found[#found])
end
return out
"""
