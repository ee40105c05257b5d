#!lua name=spoold_v1
--[[
spoold's Redis backend: every change of a job's state is one of these functions,
so it happens whole or not at all (no window where a job has left one structure
and not reached the next). KEYS[1] is the spool's prefix, "spoold:{<name>}:";
every key is derived from it and so stays in one Cluster slot (the hash tag).

  job:<id>      hash: spec (as submitted), doc (the daemon's state document, once
                it wrote one), state (ready|due|active|done|failed), prio, seq,
                age (the job's enqueued_at in ms: its place among equals), epoch
                (the fencing token), owner, enq, claimed, due, finished,
                final_epoch, record (the done/failed record, JSON), cancel (the uid
                that cancelled it while it ran), class (as submitted, for [limits]),
                ukey (the unique_key it holds), dup_of (the job that held its
                unique_key when it came: it is filed rejected as a duplicate)
  seq           counter: the order of submission, server-side
  ready         zset, score -priority, member "<age, 16 digits><seq, 20 digits>:<id>":
                highest priority first, then oldest enqueued_at (as on the file
                spool), then first submitted
  due           zset, score due time (ms, server clock), member id
  active        zset, score lease deadline (ms, server clock), member id
  idx:done      zset, score finished (ms), member id (and idx:failed)
  daemons       hash, owner -> what it said of itself, for `spoold status`
  bell          pub/sub channel: "something may be ready"
  cancel        pub/sub channel: "the job <id> you run was cancelled" (its hash says by whom)
  filed:<id>    pub/sub channel: the job's record was filed (for `spoold wait`)
  schedules     hash, schedule name -> its mark (periodic jobs; see spoold_fire)
  unique        hash, unique_key -> the id of the job that holds it (while it waits or runs)
  lane:<class>  zset, as ready: ready jobs of a class at its [limits], set aside by a claim
  lanes         set of the classes that have a lane
  running:<class> set of the ids of a limited class's jobs claimed to run
  bucket:<class>  hash: tokens, at (ms): a limited class's rate, as a token bucket

Times are the server's (TIME), in milliseconds. A stale claim is answered
"fenced" and changes nothing.
]]

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function job_key(p, id) return p .. 'job:' .. id end

local MEMBER_PREFIX = 37  -- 16 + 20 digits and the ':'

local function ready_member(age, seq, id)
  return string.format('%016d%020d', age, seq) .. ':' .. id
end

local function make_ready(p, id, prio, age, seq)
  redis.call('ZADD', p .. 'ready', -prio, ready_member(age, seq, id))
  redis.call('HSET', job_key(p, id), 'state', 'ready')
end

-- Make the stored job ready, from its own fields.
local function ready_again(p, id)
  local f = redis.call('HMGET', job_key(p, id), 'prio', 'age', 'seq')
  make_ready(p, id, tonumber(f[1]), tonumber(f[2]), tonumber(f[3]))
end

-- The priority and run_at of a submitted document, read leniently: a document
-- the daemon will reject still gets queued, so that its rejection is recorded.
local function read_spec(spec)
  local ok, doc = pcall(cjson.decode, spec)
  local prio, run_at, age, class, ukey = 0, nil, nil, '', nil
  if ok and type(doc) == 'table' then
    if type(doc.class) == 'string' then class = doc.class end
    if type(doc.unique_key) == 'string' and #doc.unique_key > 0 then ukey = doc.unique_key end
    if type(doc.priority) == 'number' and doc.priority == math.floor(doc.priority)
       and math.abs(doc.priority) < 1e15 then
      prio = doc.priority
    end
    if type(doc.run_at) == 'number' then run_at = doc.run_at end
    if type(doc.enqueued_at) == 'number' and doc.enqueued_at >= 0
       and doc.enqueued_at < 1e12 then
      age = math.floor(doc.enqueued_at * 1000)
    end
  end
  return prio, run_at, age, class, ukey
end

local function promote(p, now, batch)
  local due = redis.call('ZRANGEBYSCORE', p .. 'due', '-inf', now, 'LIMIT', 0, batch)
  for _, id in ipairs(due) do
    redis.call('ZREM', p .. 'due', id)
    ready_again(p, id)
  end
  local first = redis.call('ZRANGE', p .. 'due', 0, 0, 'WITHSCORES')
  if first[2] then return tonumber(first[2]) end
  return -1
end

-- What a claim hands back: id, epoch, document, trusted, claimed-at, server now, the
-- uid that cancelled it meanwhile (or false), and the job whose duplicate it is (or false).
local function handout(p, id, now, claimed)
  local fields = redis.call('HMGET', job_key(p, id), 'doc', 'spec', 'epoch', 'cancel', 'dup_of')
  local doc, trusted = fields[1], 1
  if not doc then doc, trusted = fields[2], 0 end
  return {id, tonumber(fields[3]), doc, trusted, claimed, now, fields[4] or false,
          fields[5] or false}
end

local function take(p, id, owner, lease, now)
  local key = job_key(p, id)
  local epoch = redis.call('HINCRBY', key, 'epoch', 1)
  redis.call('HSET', key, 'state', 'active', 'owner', owner, 'claimed', now)
  redis.call('ZADD', p .. 'active', now + lease, id)
  return epoch
end

-- The job leaves active: its lease, and its place among its class's running attempts;
-- a daemon waiting for a slot of that class is rung.
local function leave_active(p, id)
  redis.call('ZREM', p .. 'active', id)
  local class = redis.call('HGET', job_key(p, id), 'class')
  if class and redis.call('SREM', p .. 'running:' .. class, id) == 1
     and redis.call('ZCARD', p .. 'lane:' .. class) > 0 then
    redis.call('PUBLISH', p .. 'bell', id)
  end
end

-- Is ``epoch`` the job's current claim, still active? (else: fenced)
local function holds(p, id, epoch)
  local fields = redis.call('HMGET', job_key(p, id), 'state', 'epoch')
  return fields[1] == 'active' and tonumber(fields[2]) == tonumber(epoch)
end

-- Let the job hold its unique key: nil, or the id of the live job (waiting or
-- running) that holds it, in which case the job is marked a duplicate of it.
local function hold_key(p, id, ukey)
  if not ukey then return nil end
  local holder = redis.call('HGET', p .. 'unique', ukey)
  if holder and holder ~= id then
    local state = redis.call('HGET', job_key(p, holder), 'state')
    if state == 'ready' or state == 'due' or state == 'active' then
      redis.call('HSET', job_key(p, id), 'dup_of', holder)
      return holder
    end
  end
  redis.call('HSET', p .. 'unique', ukey, id)
  redis.call('HSET', job_key(p, id), 'ukey', ukey)
  return nil
end

local function release_key(p, id)
  local ukey = redis.call('HGET', job_key(p, id), 'ukey')
  if ukey and redis.call('HGET', p .. 'unique', ukey) == id then
    redis.call('HDEL', p .. 'unique', ukey)
  end
end

-- A new job's hash; ``refused``: the daemon refuses it (it holds no unique key).
local function new_job(p, id, spec, now, refused)
  local seq = redis.call('INCR', p .. 'seq')
  local prio, run_at, age, class, ukey = read_spec(spec)
  age = age or now
  redis.call('HSET', job_key(p, id), 'spec', spec, 'prio', prio, 'seq', seq, 'age', age,
             'enq', now, 'epoch', 0, 'class', class)
  local dup = nil
  if not refused then dup = hold_key(p, id, ukey) end
  if dup then run_at = nil end  -- a duplicate is filed rejected at once, not at its run_at
  return prio, seq, run_at, age
end

local function existing(p, id, spec)
  local stored = redis.call('HGET', job_key(p, id), 'spec')
  if not stored then return nil end
  if stored == spec then return 'dup' end
  return 'taken'
end

-- submit(id, spec): 'ok', 'dup' (this very job is in already: a re-sent submit)
-- or 'taken' (another job has the id: pick another).
local function enqueue(p, id, spec)
  local now = now_ms()
  local prio, seq, run_at, age = new_job(p, id, spec, now)
  if run_at and run_at * 1000 > now then
    redis.call('ZADD', p .. 'due', math.floor(run_at * 1000), id)
    redis.call('HSET', job_key(p, id), 'state', 'due', 'due', math.floor(run_at * 1000))
  else
    make_ready(p, id, prio, age, seq)
    redis.call('PUBLISH', p .. 'bell', id)
  end
end

redis.register_function('spoold_submit', function(keys, args)
  local p, id, spec = keys[1], args[1], args[2]
  local seen = existing(p, id, spec)
  if seen then return seen end
  enqueue(p, id, spec)
  return 'ok'
end)

-- Periodic jobs. schedules: hash, schedule name -> its mark, JSON {considered,
-- last_job, last_fired} (times in ms): the newest firing dealt with, and the newest
-- one submitted. Apart from the records, so that retention never makes a firing new.
local function read_mark(p, name)
  local raw = redis.call('HGET', p .. 'schedules', name)
  if raw then return cjson.decode(raw) end
  return nil
end

local function write_mark(p, name, considered, last_job, last_fired)
  local mark = {considered = considered}
  if last_job then
    mark.last_job = last_job
    mark.last_fired = last_fired
  end
  redis.call('HSET', p .. 'schedules', name, cjson.encode(mark))
end

local LIVE_STATES = {ready = true, due = true, active = true}

-- fire(name, at_ms, id, spec, exclusive): submit one firing of a schedule, once,
-- whichever daemon asks first: 'fired'; 'already' (its mark is at or past at_ms,
-- or the id is taken); 'overlap' (exclusive = '1' and the schedule's last job
-- waits or runs). The mark moves to at_ms.
redis.register_function('spoold_fire', function(keys, args)
  local p, name, at, id, spec = keys[1], args[1], tonumber(args[2]), args[3], args[4]
  local mark = read_mark(p, name)
  local last_job, last_fired = nil, nil
  if mark then
    if mark.considered >= at then return 'already' end
    last_job, last_fired = mark.last_job, mark.last_fired
  end
  if redis.call('EXISTS', job_key(p, id)) == 1 then
    write_mark(p, name, at, last_job, last_fired)
    return 'already'
  end
  if args[5] == '1' and last_job
     and LIVE_STATES[redis.call('HGET', job_key(p, last_job), 'state') or ''] then
    write_mark(p, name, at, last_job, last_fired)
    return 'overlap'
  end
  enqueue(p, id, spec)
  write_mark(p, name, at, id, at)
  return 'fired'
end)

-- skip_firings(name, upto_ms): move the mark to upto_ms (never back), firing nothing.
redis.register_function('spoold_skip_firings', function(keys, args)
  local p, name, upto = keys[1], args[1], tonumber(args[2])
  local mark = read_mark(p, name)
  if mark and mark.considered >= upto then return 'ok' end
  if mark then
    write_mark(p, name, upto, mark.last_job, mark.last_fired)
  else
    write_mark(p, name, upto, nil, nil)
  end
  return 'ok'
end)

-- adopt(id, spec, owner, lease_ms, refused): submit a job already claimed by ``owner``
-- (a file from incoming/ the daemon refuses, or sends to wait): {epoch, now, the job
-- whose duplicate it is or false}, or 'dup' / 'taken' as for submit.
redis.register_function('spoold_adopt', function(keys, args)
  local p, id, spec, owner, lease = keys[1], args[1], args[2], args[3], tonumber(args[4])
  local seen = existing(p, id, spec)
  if seen then return seen end
  local now = now_ms()
  new_job(p, id, spec, now, args[5] == '1')
  local epoch = take(p, id, owner, lease, now)
  return {epoch, now, redis.call('HGET', job_key(p, id), 'dup_of') or false}
end)

-- [limits]: the claiming daemon's, handed to each claim as (class, concurrency or 0,
-- rate count or 0, rate period in ms) quads; every daemon of a spool should have the same.
local function read_limits(args, from)
  local limits = {}
  for i = from, #args, 4 do
    limits[args[i]] = {conc = tonumber(args[i + 1]), count = tonumber(args[i + 2]),
                       per = tonumber(args[i + 3])}
  end
  return limits
end

-- The tokens in a class's bucket at ``now`` (full when it was never used).
local function bucket_level(p, class, limit, now)
  local b = redis.call('HMGET', p .. 'bucket:' .. class, 'tokens', 'at')
  if not b[1] then return limit.count end
  local level = tonumber(b[1]) + (now - tonumber(b[2])) * limit.count / limit.per
  if level > limit.count then level = limit.count end
  return level
end

local function full(p, class, limit)
  return limit.conc > 0 and redis.call('SCARD', p .. 'running:' .. class) >= limit.conc
end

-- Is the class at its limit, so that nothing of it may start now?
local function blocked(p, class, limits, now)
  local limit = limits[class]
  if not limit then return false end
  if full(p, class, limit) then return true end
  return limit.count > 0 and bucket_level(p, class, limit, now) < 1
end

local function started(p, class, id, limits, now)
  local limit = limits[class]
  if not limit then return end
  redis.call('SADD', p .. 'running:' .. class, id)
  if limit.count > 0 then
    local level = bucket_level(p, class, limit, now) - 1
    redis.call('HSET', p .. 'bucket:' .. class, 'tokens', tostring(level), 'at', now)
  end
end

local ASIDE_BATCH = 1000  -- jobs set aside by one claim at most ('more' if there may be others)

-- The best ready job whose class is not at its limit: {zset, member, class} or nil, and
-- whether the claim stopped setting jobs aside before it saw all it could. The first
-- jobs of ready whose class is blocked are moved to their class's lane, in order; a
-- lane's first job competes with ready's as soon as its class is free.
local function best_ready(p, limits, now)
  local more = false
  for i = 1, ASIDE_BATCH + 1 do
    local head = redis.call('ZRANGE', p .. 'ready', 0, 0, 'WITHSCORES')
    if not head[1] then break end
    if i > ASIDE_BATCH then more = true; break end
    local f = redis.call('HMGET', job_key(p, string.sub(head[1], MEMBER_PREFIX + 1)),
                         'class', 'dup_of')
    if f[2] or not blocked(p, f[1] or '', limits, now) then break end
    redis.call('ZREM', p .. 'ready', head[1])
    redis.call('ZADD', p .. 'lane:' .. f[1], head[2], head[1])
    redis.call('SADD', p .. 'lanes', f[1])
  end
  local best = nil
  local head = redis.call('ZRANGE', p .. 'ready', 0, 0, 'WITHSCORES')
  if head[1] then best = {p .. 'ready', head[1], tonumber(head[2])} end
  for _, class in ipairs(redis.call('SMEMBERS', p .. 'lanes')) do
    local first = redis.call('ZRANGE', p .. 'lane:' .. class, 0, 0, 'WITHSCORES')
    if not first[1] then
      redis.call('SREM', p .. 'lanes', class)
    elseif not blocked(p, class, limits, now) then
      local score = tonumber(first[2])
      if not best or score < best[3] or (score == best[3] and first[1] < best[2]) then
        best = {p .. 'lane:' .. class, first[1], score}
      end
    end
  end
  return best, more
end

-- When the first lane held back by its rate alone gets a token (ms), or -1.
local function next_token(p, limits, now)
  local soonest = -1
  for _, class in ipairs(redis.call('SMEMBERS', p .. 'lanes')) do
    local limit = limits[class]
    if limit and limit.count > 0 and not full(p, class, limit) then
      local missing = 1 - bucket_level(p, class, limit, now)
      if missing > 0 then  -- (a class with a token is not held back by its rate)
        local at = now + math.ceil(missing * limit.per / limit.count)
        if soonest < 0 or at < soonest then soonest = at end
      end
    end
  end
  return soonest
end

-- claim(owner, lease_ms, batch, limits...): release what is due, then take the best
-- ready job whose class is not at its limit: {handout..., next_due, next_token, more},
-- or {false, now, next_due, next_token, more} (more: call again, jobs were left unseen).
local function claim_best(p, owner, lease, batch, limits)
  local now = now_ms()
  local next_due = promote(p, now, batch)
  local best, more = best_ready(p, limits, now)
  local out = {false, now}
  if best then
    redis.call('ZREM', best[1], best[2])
    local id = string.sub(best[2], MEMBER_PREFIX + 1)
    take(p, id, owner, lease, now)
    if redis.call('HEXISTS', job_key(p, id), 'dup_of') == 0 then
      started(p, redis.call('HGET', job_key(p, id), 'class'), id, limits, now)
    end
    out = handout(p, id, now, now)
  end
  table.insert(out, next_due)
  table.insert(out, next_token(p, limits, now))
  table.insert(out, more and 1 or 0)
  return out
end

redis.register_function('spoold_claim', function(keys, args)
  return claim_best(keys[1], args[1], tonumber(args[2]), tonumber(args[3]), read_limits(args, 4))
end)

-- finish(id, epoch, status, record, follow-up id, its spec, ...): 'ok', 'already'
-- (this claim filed this very record: a finish re-sent after its answer was lost) or
-- 'fenced' (a stale claim, or another record: nothing changed). The follow-ups are
-- submitted with the record, in this one function: exactly once. (finish_job: the
-- follow-ups are args[first..last].)
local function finish_job(p, id, epoch, status, record, args, first, last)
  local key = job_key(p, id)
  local fields = redis.call('HMGET', key, 'state', 'final_epoch', 'record')
  if fields[1] == status and tonumber(fields[2]) == tonumber(epoch) and fields[3] == record then
    return 'already'
  end
  if not holds(p, id, epoch) then return 'fenced' end
  local now = now_ms()
  redis.call('HSET', key, 'state', status, 'record', record, 'finished', now,
             'final_epoch', epoch)
  redis.call('HDEL', key, 'owner', 'doc', 'cancel')
  leave_active(p, id)
  release_key(p, id)
  redis.call('ZADD', p .. 'idx:' .. status, now, id)
  redis.call('PUBLISH', p .. 'filed:' .. id, status)
  for i = first, last, 2 do  -- the follow-ups the record names, each submitted once
    if redis.call('EXISTS', job_key(p, args[i])) == 0 then enqueue(p, args[i], args[i + 1]) end
  end
  return 'ok'
end

redis.register_function('spoold_finish', function(keys, args)
  return finish_job(keys[1], args[1], args[2], args[3], args[4], args, 5, #args)
end)

-- finish_claim(id, epoch, status, record, owner, lease_ms, batch, n, n follow-up args,
-- limits...): finish, then, if the record is filed ('ok' or 'already'), claim, in one
-- trip: {finish's answer, claim's answer...}, or {'fenced'} and no claim. A daemon that
-- files an attempt's outcome and has the slot for another job saves a round trip (and
-- Redis an fsync of its log) per job.
redis.register_function('spoold_finish_claim', function(keys, args)
  local p, n = keys[1], tonumber(args[8])
  local answer = finish_job(p, args[1], args[2], args[3], args[4], args, 9, 8 + n)
  if answer == 'fenced' then return {answer} end
  local out = claim_best(p, args[5], tonumber(args[6]), tonumber(args[7]),
                         read_limits(args, 9 + n))
  table.insert(out, 1, answer)
  return out
end)

-- schedule(id, epoch, due_ms, doc): wait until due_ms, with the daemon's new
-- state document (an empty doc keeps the stored one: a put-back). 'ok' or 'fenced'.
redis.register_function('spoold_schedule', function(keys, args)
  local p, id, epoch, due, doc = keys[1], args[1], args[2], tonumber(args[3]), args[4]
  if not holds(p, id, epoch) then return 'fenced' end
  local key = job_key(p, id)
  if redis.call('HEXISTS', key, 'cancel') == 1 then due = now_ms() end  -- to be filed cancelled
  if doc ~= '' then redis.call('HSET', key, 'doc', doc) end
  redis.call('HSET', key, 'state', 'due', 'due', due)
  redis.call('HDEL', key, 'owner')
  leave_active(p, id)
  redis.call('ZADD', p .. 'due', due, id)
  if due <= now_ms() then redis.call('PUBLISH', p .. 'bell', id) end
  return 'ok'
end)

-- renew(owner, lease_ms, heartbeat, id1, epoch1, ...): note the daemon's
-- heartbeat (what it said of itself, JSON, with the server's time added as
-- "seen") in ``daemons``; extend each claim still held and not lapsed;
-- {now, "<id> <epoch>" of each claim lost, "!<id> <uid>" of each held one cancelled...}.
redis.register_function('spoold_renew', function(keys, args)
  local p, owner, lease = keys[1], args[1], tonumber(args[2])
  local now = now_ms()
  local ok, beat = pcall(cjson.decode, args[3])
  if ok and type(beat) == 'table' then
    beat.seen = now
    redis.call('HSET', p .. 'daemons', owner, cjson.encode(beat))
  end
  local out = {now}
  for i = 4, #args, 2 do
    local id, epoch = args[i], args[i + 1]
    local deadline = tonumber(redis.call('ZSCORE', p .. 'active', id))
    local who = redis.call('HGET', job_key(p, id), 'owner')
    if holds(p, id, epoch) and who == owner and deadline and deadline > now then
      redis.call('ZADD', p .. 'active', now + lease, id)
      local by = redis.call('HGET', job_key(p, id), 'cancel')
      if by then table.insert(out, '!' .. id .. ' ' .. by) end  -- a cancel whose word was lost
    else
      table.insert(out, id .. ' ' .. epoch)
    end
  end
  return out
end)

local function reclaim(p, id, owner, lease, now)
  local claimed = tonumber(redis.call('HGET', job_key(p, id), 'claimed')) or now
  take(p, id, owner, lease, now)
  return handout(p, id, now, claimed)
end

-- reap(owner, lease_ms, batch): claim anew, for ``owner``, jobs whose lease
-- lapsed; a list of handouts (claimed = when the lost attempt's claim was made).
redis.register_function('spoold_reap', function(keys, args)
  local p, owner, lease, batch = keys[1], args[1], tonumber(args[2]), tonumber(args[3])
  local now = now_ms()
  local out = {}
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', p .. 'active', '-inf', now,
                                 'LIMIT', 0, batch)) do
    table.insert(out, reclaim(p, id, owner, lease, now))
  end
  return out
end)

-- recover(host_prefix, owner, lease_ms): claim anew, for ``owner``, every job an
-- earlier daemon of this host (its owner starts with host_prefix) left active.
redis.register_function('spoold_recover', function(keys, args)
  local p, prefix, owner, lease = keys[1], args[1], args[2], tonumber(args[3])
  local now = now_ms()
  local out = {}
  for _, id in ipairs(redis.call('ZRANGE', p .. 'active', 0, -1)) do
    local who = redis.call('HGET', job_key(p, id), 'owner') or ''
    if who ~= owner and string.sub(who, 1, #prefix) == prefix then
      table.insert(out, reclaim(p, id, owner, lease, now))
    end
  end
  return out
end)

-- retry(id): a failed job waits again as submitted, attempts afresh: 'ok',
-- 'missing', or the state it is in.
redis.register_function('spoold_retry', function(keys, args)
  local p, id = keys[1], args[1]
  local key = job_key(p, id)
  local state = redis.call('HGET', key, 'state')
  if not state then return 'missing' end
  if state ~= 'failed' then return state end
  redis.call('HDEL', key, 'doc', 'record', 'finished', 'final_epoch', 'owner', 'claimed',
             'cancel', 'dup_of', 'ukey')
  redis.call('ZREM', p .. 'idx:failed', id)
  local _, _, _, _, ukey = read_spec(redis.call('HGET', key, 'spec'))
  hold_key(p, id, ukey)  -- live again: its key, or a duplicate of who holds it now
  ready_again(p, id)
  redis.call('PUBLISH', p .. 'bell', id)
  return 'ok'
end)

-- cancel(id, owner, lease_ms, by): a job that waits (ready or due) is claimed for
-- ``owner``, to be filed cancelled: a handout. One that runs is marked cancelled by
-- ``by`` (a uid) and its daemon told on the cancel channel (renew tells it too, should
-- the word be lost): 'marked'. Else its state ('done', 'failed'), or 'missing'.
redis.register_function('spoold_cancel', function(keys, args)
  local p, id, owner, lease, by = keys[1], args[1], args[2], tonumber(args[3]), args[4]
  local key = job_key(p, id)
  local f = redis.call('HMGET', key, 'state', 'age', 'seq')
  local state = f[1]
  if not state then return 'missing' end
  if state == 'active' then
    redis.call('HSET', key, 'cancel', by)
    redis.call('PUBLISH', p .. 'cancel', id)
    return 'marked'
  end
  if state == 'ready' then
    local member = ready_member(tonumber(f[2]), tonumber(f[3]), id)
    redis.call('ZREM', p .. 'ready', member)
    redis.call('ZREM', p .. 'lane:' .. (redis.call('HGET', key, 'class') or ''), member)
  elseif state == 'due' then
    redis.call('ZREM', p .. 'due', id)
  else
    return state
  end
  local now = now_ms()
  take(p, id, owner, lease, now)
  return handout(p, id, now, now)
end)

-- purge(status, before_ms, batch): delete up to ``batch`` records of ``status``
-- finished before ``before_ms``; their ids.
redis.register_function('spoold_purge', function(keys, args)
  local p, status, before, batch = keys[1], args[1], args[2], tonumber(args[3])
  local ids = redis.call('ZRANGEBYSCORE', p .. 'idx:' .. status, '-inf', before,
                         'LIMIT', 0, batch)
  for _, id in ipairs(ids) do
    redis.call('DEL', job_key(p, id))
    redis.call('ZREM', p .. 'idx:' .. status, id)
  end
  return ids
end)

-- release(owner, held ids...): jobs active under ``owner`` that it does not hold
-- (a claim or adopt whose answer was lost: the daemon never knew it had them) go
-- back to wait as they were, no attempt counted; their epoch moves on. Their ids.
redis.register_function('spoold_release', function(keys, args)
  local p, owner = keys[1], args[1]
  local held = {}
  for i = 2, #args do held[args[i]] = true end
  local now = now_ms()
  local out = {}
  for _, id in ipairs(redis.call('ZRANGE', p .. 'active', 0, -1)) do
    local key = job_key(p, id)
    if not held[id] and redis.call('HGET', key, 'owner') == owner then
      redis.call('HINCRBY', key, 'epoch', 1)
      redis.call('HDEL', key, 'owner')
      leave_active(p, id)
      local _, run_at = read_spec(redis.call('HGET', key, 'spec'))
      if not redis.call('HEXISTS', key, 'doc') and run_at and run_at * 1000 > now then
        redis.call('ZADD', p .. 'due', math.floor(run_at * 1000), id)
        redis.call('HSET', key, 'state', 'due', 'due', math.floor(run_at * 1000))
      else
        ready_again(p, id)
      end
      table.insert(out, id)
    end
  end
  return out
end)
