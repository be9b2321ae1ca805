-- Named queries of the SQLite event store. Each starts with a "-- name: NAME" line.
-- Lists (ids, keys, targets) are passed as one JSON array and read with json_each,
-- so no query text is ever built at run time (except the bulk inserts of
-- hub/store/bulk.py, which repeat a fixed row of placeholders).
-- For an event in 'sending', next_attempt_at is the end of its lease: a crashed
-- worker's event becomes claimable again then (found through events_due). With the store's
-- clock shift (meta 'clock_shift': the seconds of every step back of the wall clock undone,
-- less those of every step forward applied, 0 before any) it is also the lease's token: an
-- outcome given with :lease applies only while the event is still 'sending' and
-- next_attempt_at + clock_shift = :lease (two claims of one event end at least a lease
-- apart). A claim hands out the lease end plus the shift; an undone step back moves the
-- lease ends back and adds itself to the shift, a step forward moves them forward and takes
-- itself from it, so a lease keeps its token (see leases_stepped_back). "=" is within 1e-3 s:
-- a claim hands its rows out through printf('%.17g'), which SQLite renders up to 4 units in
-- the last place off (9.5e-7 s at today's times, twice that after 2038), and each step moved
-- adds a rounding; two claims' tokens are at least a lease (6 s or more) apart.

-- name: schema
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
-- A new database starts at the current version; an older one is migrated (migrate_1, then
-- migrate_2, then migrate_3: see hub.store.sqlite_conn.migrate).
INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', '4');
-- Version 1's claim index: a leadhub of before the refusal of newer files (e270549) opening
-- this file made it again (written at every enqueue, read by nothing).
DROP INDEX IF EXISTS events_pending;

-- One row per HTTP request as received: the raw body is stored once, however many
-- leads it carries.
CREATE TABLE IF NOT EXISTS deliveries (
    id INTEGER PRIMARY KEY,
    endpoint TEXT NOT NULL,
    received_at REAL NOT NULL,
    content_type TEXT NOT NULL,
    headers BLOB NOT NULL,          -- JSON object
    body BLOB NOT NULL,             -- as received, or compressed: see body_format
    body_format INTEGER NOT NULL DEFAULT 0  -- 0 as received, 1 a raw-deflate segment
);

-- One row per lead. document is NULL when it is exactly the parsed JSON body. AUTOINCREMENT:
-- an id is never handed out again, not even once a purge has deleted the newest events (an id
-- in an answer or a log line names one lead for good); ids still run without gaps within a
-- multi-row insert (hub/store/bulk.py).
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery INTEGER NOT NULL REFERENCES deliveries (id),
    endpoint TEXT NOT NULL,
    delivery_id TEXT NOT NULL,
    document BLOB,                  -- JSON
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,  -- the lease end while 'sending'
    last_error TEXT,
    enrichment BLOB,                -- JSON
    target TEXT,
    mapping TEXT,
    lead_id TEXT,
    lead_created INTEGER,
    updated_at REAL NOT NULL,
    -- When `leadhub replay` last put the event back in the queue (NULL: never): the retry
    -- schedule's give_up_after counts from here, else from received_at.
    requeued_at REAL,
    -- 1 while the event's lead is known only after an API read (Facebook, LinkedIn, HubSpot
    -- apps) and no route is recorded yet: it holds no later event back meanwhile (blockers).
    awaits_read INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX IF NOT EXISTS events_dedupe ON events (endpoint, delivery_id);
CREATE INDEX IF NOT EXISTS events_due ON events (state, next_attempt_at);
-- Waiting events in id order: claim walks this and stops after `limit` due ones. Claimed
-- ('sending') events are left out, so a long run of claims never walks over its own
-- leases; expired leases are found through events_due instead.
CREATE INDEX IF NOT EXISTS events_ready ON events (id)
    WHERE state IN ('queued', 'retrying');
-- A delivery's events: a purge deletes a delivery's row once none is left (about 15
-- bytes and well under a microsecond per event: ids only grow, so inserts append).
CREATE INDEX IF NOT EXISTS events_delivery ON events (delivery);
-- Claimed events whose lead keys are not recorded yet (between a claim and its routes, a
-- few milliseconds; an API read excepted): blockers treats them as holding back every later
-- event. Entries live only that long, so the index stays a handful of rows.
CREATE INDEX IF NOT EXISTS events_unrouted ON events (id)
    WHERE state = 'sending' AND target IS NULL AND awaits_read = 0;

-- Identity keys (email, phone) of routed events, for per-lead ordering.
CREATE TABLE IF NOT EXISTS lead_keys (
    key TEXT NOT NULL,
    event INTEGER NOT NULL,
    PRIMARY KEY (key, event)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS lead_keys_event ON lead_keys (event);

-- Calls made to each LeadSquared account, so that every process on this database together
-- stays within the account's rate limit (SQLiteStore.take_slots). account is a digest of
-- the target's URL and access key, never the key. ends_at is when the call ended; for a
-- call still in flight, the latest it can end (the longest a call lasts, counted from its
-- slot): a process that dies mid-call frees its slots then.
CREATE TABLE IF NOT EXISTS rate_slots (
    id INTEGER PRIMARY KEY,
    account TEXT NOT NULL,
    ends_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS rate_slots_account ON rate_slots (account, ends_at);

-- Processes waiting for slots of an account, and the slots set aside for each (`ready`, a
-- JSON array of rate_slots ids): hub.store.turns. A row is dropped, with its set-aside slots,
-- once past `until` (its process died, or gave up without saying so).
CREATE TABLE IF NOT EXISTS rate_waiters (
    account TEXT NOT NULL,
    waiter TEXT NOT NULL,
    since REAL NOT NULL,
    want INTEGER NOT NULL,
    until REAL NOT NULL,
    ready TEXT NOT NULL DEFAULT '[]',
    PRIMARY KEY (account, waiter)
);

-- Time no event was tried in, as unix times (hub.dispatch.spans): a target's pauses (kind
-- 'target', name the target's) and an endpoint's held lead reads ('reads', the endpoint's).
-- That time does not count toward an event's give_up_after, and a restart reads what the
-- processes before it saw. While a span lasts, ended is when it is due to end (what a process
-- killed meanwhile leaves). Only the latest few of each name are kept (keep_span). Added
-- without a version bump: an older leadhub leaves the table alone, a newer one makes it at open.
CREATE TABLE IF NOT EXISTS held_spans (
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    began REAL NOT NULL,
    ended REAL NOT NULL,
    PRIMARY KEY (kind, name, began)
) WITHOUT ROWID;

CREATE VIEW IF NOT EXISTS event_rows AS
SELECT
    e.id, e.endpoint, e.delivery_id, d.received_at, d.body, d.body_format, d.content_type,
    d.headers,
    e.document, e.state, e.attempts, e.next_attempt_at, e.last_error, e.enrichment,
    e.target, e.mapping,
    (SELECT group_concat(k.key, char(31)) FROM lead_keys AS k WHERE k.event = e.id)
        AS lead_keys,
    e.lead_id, e.lead_created, e.updated_at, e.requeued_at
FROM events AS e JOIN deliveries AS d ON d.id = e.delivery;

-- name: schema_version
SELECT value FROM meta WHERE key = 'schema_version';

-- name: migrate_1
-- Version 1 to 2: compressed bodies, and a claim index without leased events.
ALTER TABLE deliveries ADD COLUMN body_format INTEGER NOT NULL DEFAULT 0;
DROP INDEX IF EXISTS events_pending;
CREATE INDEX IF NOT EXISTS events_ready ON events (id) WHERE state IN ('queued', 'retrying');
-- (the view is made again from the schema above, once every migration has run)
DROP VIEW IF EXISTS event_rows;
UPDATE meta SET value = '2' WHERE key = 'schema_version';

-- name: migrate_2
-- Version 2 to 3: the replay time (the give-up clock's start) and the API-read mark of
-- per-lead ordering, and the index of claimed events not yet routed.
ALTER TABLE events ADD COLUMN requeued_at REAL;
ALTER TABLE events ADD COLUMN awaits_read INTEGER NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS events_unrouted ON events (id)
    WHERE state = 'sending' AND target IS NULL AND awaits_read = 0;
DROP VIEW IF EXISTS event_rows;
UPDATE meta SET value = '3' WHERE key = 'schema_version';

-- name: migrate_3
-- Version 3 to 4: event ids never handed out again (AUTOINCREMENT, which SQLite gives only a
-- table made with it: the events are copied into one, ids kept; sqlite_sequence then starts
-- at the largest id left, as ids of events a purge deleted before are not known).
DROP VIEW IF EXISTS event_rows;
CREATE TABLE events_v4 (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery INTEGER NOT NULL REFERENCES deliveries (id),
    endpoint TEXT NOT NULL,
    delivery_id TEXT NOT NULL,
    document BLOB,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    last_error TEXT,
    enrichment BLOB,
    target TEXT,
    mapping TEXT,
    lead_id TEXT,
    lead_created INTEGER,
    updated_at REAL NOT NULL,
    requeued_at REAL,
    awaits_read INTEGER NOT NULL DEFAULT 0
);
INSERT INTO events_v4 (
    id, delivery, endpoint, delivery_id, document, state, attempts, next_attempt_at,
    last_error, enrichment, target, mapping, lead_id, lead_created, updated_at, requeued_at,
    awaits_read
)
SELECT
    id, delivery, endpoint, delivery_id, document, state, attempts, next_attempt_at,
    last_error, enrichment, target, mapping, lead_id, lead_created, updated_at, requeued_at,
    awaits_read
FROM events ORDER BY id;
-- (its indexes go with it; the schema script makes them again on the new table)
DROP TABLE events;
ALTER TABLE events_v4 RENAME TO events;
UPDATE meta SET value = '4' WHERE key = 'schema_version';

-- name: find_id
SELECT 1 FROM events WHERE id = :id;

-- name: find_event
SELECT id FROM events WHERE endpoint = :endpoint AND delivery_id = :delivery_id;

-- name: insert_delivery
INSERT INTO deliveries (endpoint, received_at, content_type, headers, body, body_format)
VALUES (:endpoint, :received_at, :content_type, :headers, :body, :body_format);

-- name: insert_event
INSERT INTO events (delivery, endpoint, delivery_id, document, state, attempts,
                    next_attempt_at, updated_at)
VALUES (:delivery, :endpoint, :delivery_id, :document, 'queued', 0, :now, :now);

-- name: claimable
-- Waiting events in id order (a backlog needs no sort), stopping after `limit` due ones,
-- plus claimed events whose lease ran out (few: found by state and due time). Events routed
-- to a target in :exclude are left alone, and so are the unrouted events of the endpoints
-- in :unrouted (those whose leads the dispatcher reads and has no room to read more). With
-- :known (a JSON array, or NULL for no such check), an event of another endpoint is claimed
-- only while no instance has taken it up since it was queued or replayed: no last error
-- written since (an instance without its endpoint writes hub.store.base.ENDPOINT_ABSENT; one
-- with it, why it failed or waits: a read, a missing target, an ordering wait, a send), no
-- route and no read started. (A replay keeps the last error as history and writes
-- updated_at = requeued_at; every later write moves updated_at.)
SELECT id FROM (
    SELECT id FROM events INDEXED BY events_ready
    WHERE state IN ('queued', 'retrying')
      AND next_attempt_at <= :now
      AND (target IS NULL OR target NOT IN (SELECT value FROM json_each(:exclude)))
      AND (target IS NOT NULL OR endpoint NOT IN (SELECT value FROM json_each(:unrouted)))
      AND (:known IS NULL
           OR (target IS NULL AND awaits_read = 0
               AND (last_error IS NULL OR updated_at = requeued_at))
           OR endpoint IN (SELECT value FROM json_each(:known)))
    ORDER BY id
    LIMIT :limit
)
UNION ALL
SELECT id FROM (
    SELECT id FROM events INDEXED BY events_due
    WHERE state = 'sending'
      AND next_attempt_at <= :now
      AND (target IS NULL OR target NOT IN (SELECT value FROM json_each(:exclude)))
      AND (target IS NOT NULL OR endpoint NOT IN (SELECT value FROM json_each(:unrouted)))
      AND (:known IS NULL
           OR (target IS NULL AND awaits_read = 0
               AND (last_error IS NULL OR updated_at = requeued_at))
           OR endpoint IN (SELECT value FROM json_each(:known)))
    ORDER BY id
    LIMIT :limit
)
ORDER BY id
LIMIT :limit;

-- name: clock_mark
-- The latest time a claim read (as text; NULL: none yet), to tell a step back of the wall
-- clock by, and the clock shift (as text; NULL: 0).
SELECT (SELECT value FROM meta WHERE key = 'clock_mark'),
       (SELECT value FROM meta WHERE key = 'clock_shift');

-- name: set_clock_mark
INSERT INTO meta (key, value) VALUES ('clock_mark', :now)
ON CONFLICT (key) DO UPDATE SET value = excluded.value;

-- name: set_clock_shift
INSERT INTO meta (key, value) VALUES ('clock_shift', :shift)
ON CONFLICT (key) DO UPDATE SET value = excluded.value;

-- name: clock_stepped_back
-- The wall clock went back :by seconds: the waiting events' due times (a receipt's, a
-- retry's, a release's) go back as much, so they wait what they were meant to, not the step
-- as well.
UPDATE events SET next_attempt_at = next_attempt_at - :by
WHERE state IN ('queued', 'retrying') AND next_attempt_at > :now;

-- name: leases_stepped_back
-- ... and so do the lease ends: a lease a dead worker held ends when it was meant to, not
-- the step later, and a live holder keeps exactly the time it had left. Every lease moves
-- (its token is its end plus the clock shift, which grows by :by in the same transaction).
-- A negative :by is a step forward a claim's store object saw (hub.store.base.clock_step): the
-- lease ends go forward as much and the shift goes down, so a live holder is not taken for
-- dead and its lease claimed (and its lead sent) again while its call is in flight.
UPDATE events SET next_attempt_at = next_attempt_at - :by WHERE state = 'sending';

-- name: slots_stepped_back
-- ... and so do the account's rate slots said to end after :now (the calls of the window
-- before the step, ended or in flight) and the waiters' turns: the window counts those calls
-- as long as it was meant to. Left as they were, they kept the window full for the step as
-- well: no call to the account went out for as long as the clock was set back (up to
-- SLOT_HORIZON; a longer step dropped them and let an extra window's calls through). Only
-- on a step back: a step forward a claim sees may be a resumed VM's sleep, real time.
UPDATE rate_slots SET ends_at = ends_at - :by WHERE ends_at > :now;

-- name: waiters_stepped_back
UPDATE rate_waiters SET since = since - :by, until = until - :by WHERE until > :now;

-- name: mark_claimed
UPDATE events
SET state = 'sending', attempts = attempts + 1, next_attempt_at = :lease_until,
    updated_at = :now
WHERE id IN (SELECT value FROM json_each(:ids));

-- name: rows_by_ids
SELECT * FROM event_rows WHERE id IN (SELECT value FROM json_each(:ids));

-- name: ack_many
-- :acks is a JSON array of [event id, lead id or null, created 1/0/null, lease or null,
-- delivered at or null (now; never later than now)].
UPDATE events
SET state = 'delivered', lead_id = json_extract(a.value, '$[1]'),
    lead_created = json_extract(a.value, '$[2]'), last_error = NULL,
    updated_at = min(coalesce(json_extract(a.value, '$[4]'), :now), :now)
FROM json_each(:acks) AS a
WHERE events.id = json_extract(a.value, '$[0]')
  AND (json_extract(a.value, '$[3]') IS NULL OR (events.state = 'sending'
       AND abs(events.next_attempt_at - json_extract(a.value, '$[3]')
               + coalesce((SELECT CAST(value AS REAL) FROM meta WHERE key = 'clock_shift'), 0))
           < 1e-3))
RETURNING events.id;

-- name: ack
UPDATE events
SET state = 'delivered', lead_id = :lead_id, lead_created = :created, last_error = NULL,
    updated_at = :now
WHERE id = :id
  AND (:lease IS NULL OR (state = 'sending'
       AND abs(next_attempt_at - :lease
               + coalesce((SELECT CAST(value AS REAL) FROM meta WHERE key = 'clock_shift'), 0))
           < 1e-3));

-- name: retry
UPDATE events
SET state = 'retrying', next_attempt_at = :at, last_error = :error, updated_at = :now
WHERE id = :id
  AND (:lease IS NULL OR (state = 'sending'
       AND abs(next_attempt_at - :lease
               + coalesce((SELECT CAST(value AS REAL) FROM meta WHERE key = 'clock_shift'), 0))
           < 1e-3));

-- name: release
-- Only a claimed ('sending') event has an attempt to give back.
UPDATE events
SET state = CASE
        WHEN (CASE WHEN state = 'sending' THEN attempts - 1 ELSE attempts END) > 0
        THEN 'retrying' ELSE 'queued' END,
    attempts = CASE WHEN state = 'sending' THEN max(attempts - 1, 0) ELSE attempts END,
    next_attempt_at = :at,
    last_error = coalesce(:reason, last_error),
    updated_at = :now
WHERE id = :id
  AND (:lease IS NULL OR (state = 'sending'
       AND abs(next_attempt_at - :lease
               + coalesce((SELECT CAST(value AS REAL) FROM meta WHERE key = 'clock_shift'), 0))
           < 1e-3));

-- name: finish
UPDATE events SET state = :state, last_error = :error, updated_at = :now
WHERE id = :id
  AND (:lease IS NULL OR (state = 'sending'
       AND abs(next_attempt_at - :lease
               + coalesce((SELECT CAST(value AS REAL) FROM meta WHERE key = 'clock_shift'), 0))
           < 1e-3));

-- name: set_routes
-- :routes is a JSON array of [event id, target, mapping, [lead keys]]: one statement per batch.
UPDATE events
SET target = json_extract(r.value, '$[1]'), mapping = json_extract(r.value, '$[2]'),
    awaits_read = 0, updated_at = :now
FROM json_each(:routes) AS r
WHERE events.id = json_extract(r.value, '$[0]');

-- name: mark_reading
-- The events of :reading (a JSON array of ids) await an API read before their lead is known.
UPDATE events SET awaits_read = 1
WHERE id IN (SELECT value FROM json_each(:reading)) AND target IS NULL;

-- name: insert_route_keys
INSERT OR IGNORE INTO lead_keys (key, event)
SELECT k.value, e.id
FROM json_each(:routes) AS r
CROSS JOIN events AS e ON e.id = json_extract(r.value, '$[0]')
CROSS JOIN json_each(json_extract(r.value, '$[3]')) AS k
WHERE k.value != '';

-- name: unknown_ids
-- Which of the ids in :ids name no event (after a batch update touched fewer rows).
SELECT j.value FROM json_each(:ids) AS j
WHERE NOT EXISTS (SELECT 1 FROM events AS e WHERE e.id = j.value)
ORDER BY j.key;

-- name: delete_lead_keys
DELETE FROM lead_keys WHERE event IN (SELECT value FROM json_each(:ids));

-- name: blockers
-- Per-lead ordering for a batch. :asked is a JSON array of [event id, [lead key, ...]];
-- the answer is one [event id, blocker id or null] per event: its blocker is the earliest
-- earlier event still pending that shares one of its keys, or else, if earlier still, the
-- earliest earlier event claimed whose keys are not recorded yet (it may be the same lead:
-- every later event waits for its routes, a few milliseconds; one awaiting an API read is
-- not counted, see awaits_read). Packed in one value (one step for the whole batch). CROSS
-- JOIN fixes the order: from the few keys, to their events. The claimed-unrouted event is
-- looked up once for the statement (one seek of events_unrouted). Only claims made after
-- :routed_since count as being routed (hub.store.base.ROUTING_GRACE): an older unrouted claim
-- is one whose process died (kill -9) or lost the store between claim and routes, and it
-- would hold back every later event, a restarted hub's included, until its lease ends.
WITH unrouted AS (
    SELECT min(id) AS id FROM events INDEXED BY events_unrouted
    WHERE state = 'sending' AND target IS NULL AND awaits_read = 0
      AND updated_at > :routed_since
), keyed AS (
    SELECT json_extract(a.value, '$[0]') AS event, (
        SELECT e.id
        FROM json_each(a.value, '$[1]') AS j
        CROSS JOIN lead_keys AS k ON k.key = j.value AND k.event < json_extract(a.value, '$[0]')
        CROSS JOIN events AS e ON e.id = k.event
        WHERE e.state IN ('queued', 'retrying', 'sending')
        ORDER BY e.id
        LIMIT 1
    ) AS blocker
    FROM json_each(:asked) AS a
)
SELECT json_group_array(json_array(k.event, CASE
    WHEN u.id < k.event THEN min(u.id, coalesce(k.blocker, u.id))
    ELSE k.blocker
END))
FROM keyed AS k CROSS JOIN unrouted AS u;

-- name: set_enrichment
UPDATE events SET enrichment = :enrichment, updated_at = :now WHERE id = :id;

-- name: get
SELECT * FROM event_rows WHERE id = :id;

-- name: list
SELECT * FROM event_rows
WHERE (:state IS NULL OR state = :state) AND (:endpoint IS NULL OR endpoint = :endpoint)
  AND (:since IS NULL OR received_at >= :since)
ORDER BY id DESC
LIMIT :limit;

-- name: list_page
-- A page of `leadhub events`, newest first: ids up to :upto (keyset pagination: the rowid
-- range is where the scan starts, however deep the page), only the columns it prints. The
-- body (for a document that is the body) only with :documents, and only when needed; the
-- enrichment (the lead an API read fetched) only with :documents.
SELECT e.id, e.endpoint, e.delivery_id, d.received_at, e.state, e.attempts,
       e.next_attempt_at, e.target, e.mapping, e.lead_id, e.lead_created, e.last_error,
       e.updated_at, CASE WHEN :documents THEN e.document END,
       CASE WHEN :documents AND e.document IS NULL THEN d.body END, d.body_format,
       e.requeued_at, CASE WHEN :documents THEN e.enrichment END
FROM events AS e JOIN deliveries AS d ON d.id = e.delivery
WHERE e.id <= :upto
  AND (:state IS NULL OR e.state = :state) AND (:endpoint IS NULL OR e.endpoint = :endpoint)
  AND (:since IS NULL OR d.received_at >= :since)
ORDER BY e.id DESC
LIMIT :limit;

-- name: counts
SELECT state, count(*) FROM events GROUP BY state;

-- name: counts_of
-- Only these states, through events_due (whose first column is the state): as dear as the
-- events counted, where counts reads every event.
SELECT state, count(*) FROM events
WHERE state IN (SELECT value FROM json_each(:states)) GROUP BY state;

-- name: replayable
-- What replay would requeue (its dry run): the same selection, nothing changed. :states is
-- a JSON array of the states taken (hub.store.base.replayed_states: 'delivered' only when
-- named); :since, when not NULL, the earliest receipt time taken.
SELECT count(*) FROM events
WHERE state IN (SELECT value FROM json_each(:states))
  AND (:ids IS NULL OR id IN (SELECT value FROM json_each(:ids)))
  AND (:endpoint IS NULL OR endpoint = :endpoint)
  AND (:since IS NULL
       OR (SELECT d.received_at FROM deliveries AS d WHERE d.id = events.delivery) >= :since);

-- name: replay_ids
-- What replay takes (the selection of replayable above), in id order: read once, then
-- requeued a step at a time (requeue).
SELECT id FROM events
WHERE state IN (SELECT value FROM json_each(:states))
  AND (:ids IS NULL OR id IN (SELECT value FROM json_each(:ids)))
  AND (:endpoint IS NULL OR endpoint = :endpoint)
  AND (:since IS NULL
       OR (SELECT d.received_at FROM deliveries AS d WHERE d.id = events.delivery) >= :since)
ORDER BY id;

-- name: requeue
-- One step of a replay: the events of :ids still in one of :states go back to the queue.
-- The retry schedule starts over: no attempts, and give_up_after counts from now.
UPDATE events
SET state = 'queued', attempts = 0, next_attempt_at = :now, target = NULL, mapping = NULL,
    lead_id = NULL, lead_created = NULL, requeued_at = :now, awaits_read = 0,
    updated_at = :now
WHERE id IN (SELECT value FROM json_each(:ids))
  AND state IN (SELECT value FROM json_each(:states))
RETURNING id;

-- name: purge_window
-- A purge's next step: the last id of the :window events after id :after, and the earliest
-- time one of them was received.
SELECT max(e.id), min(d.received_at)
FROM (SELECT id, delivery FROM events WHERE id > :after ORDER BY id LIMIT :window) AS e
JOIN deliveries AS d ON d.id = e.delivery;

-- name: newest_received
-- When the event of the largest id was received (a purge's walk: did the clock go back?).
SELECT d.received_at FROM events AS e JOIN deliveries AS d ON d.id = e.delivery
ORDER BY e.id DESC LIMIT 1;

-- name: purgeable_events
-- The events of one step that a purge takes (deleted by delete_events in the same
-- transaction, or only counted in a dry run). NOT INDEXED: the step reads its window's
-- rows by id; SQLite chose events_due (the state) instead and read every event in the
-- purged states for each step, the whole purge quadratic (a dry run of 1,000,000 events
-- took 82 s, and a step of a real one held the write lock for 0.2 s at 1,000,000 events).
SELECT id, delivery FROM events NOT INDEXED
WHERE id > :after AND id <= :upto
  AND state IN (SELECT value FROM json_each(:states))
  AND updated_at < :before
  AND (:endpoint IS NULL OR endpoint = :endpoint);

-- name: delete_events
DELETE FROM events WHERE id IN (SELECT value FROM json_each(:ids));

-- name: purge_deliveries
-- Of the deliveries whose events a purge deleted, those left without any.
DELETE FROM deliveries
WHERE id IN (SELECT value FROM json_each(:ids))
  AND NOT EXISTS (SELECT 1 FROM events WHERE events.delivery = deliveries.id);

-- name: next_due
SELECT min(due) FROM (
    SELECT min(next_attempt_at) AS due FROM events WHERE state = 'queued'
    UNION ALL
    SELECT min(next_attempt_at) FROM events WHERE state = 'retrying'
    UNION ALL
    SELECT min(next_attempt_at) FROM events WHERE state = 'sending'
);

-- name: resume_held
-- The waiting events a pause of one of :targets put back (their last error begins with
-- :held, hub.store.models.PAUSE_HELD) are due now: the target is usable again.
UPDATE events SET next_attempt_at = :now, updated_at = :now
WHERE state IN ('queued', 'retrying') AND next_attempt_at > :now
  AND target IN (SELECT value FROM json_each(:targets))
  AND substr(last_error, 1, length(:held)) = :held;

-- name: keep_span
INSERT INTO held_spans (kind, name, began, ended) VALUES (:kind, :name, :began, :ended)
ON CONFLICT (kind, name, began) DO UPDATE SET ended = excluded.ended;

-- name: prune_spans
-- All but the :keep latest spans of :kind and :name.
DELETE FROM held_spans WHERE kind = :kind AND name = :name AND began < (
    SELECT began FROM held_spans WHERE kind = :kind AND name = :name
    ORDER BY began DESC LIMIT 1 OFFSET :keep - 1
);

-- name: kept_spans
SELECT name, began, ended FROM held_spans
WHERE kind = :kind AND name IN (SELECT value FROM json_each(:names))
ORDER BY name, began;

-- name: resume_reads
-- The events of the endpoints in :endpoints retried after their lead read failed (retrying,
-- no lead stored, the read's error: hub.dispatch.enrich's '... fetch failed: ...') are due
-- now: a reload changed how those endpoints read (a fixed token). An event with no lead whose
-- send failed (a LinkedIn notice of a deleted lead, which has none to read) keeps its backoff.
-- Queued: put back untried while a proxy refused the endpoint's reads (its error theirs).
UPDATE events SET next_attempt_at = :now, updated_at = :now
WHERE state IN ('retrying', 'queued') AND next_attempt_at > :now AND enrichment IS NULL
  AND endpoint IN (SELECT value FROM json_each(:endpoints))
  AND instr(last_error, ' fetch failed: ') > 0;

-- name: expire_slots
-- Slots of calls that ended a window ago no longer count. So do slots said to end after
-- :latest: no call is held that long, so the wall clock was set back since they were taken.
DELETE FROM rate_slots
WHERE account = :account AND (ends_at <= :now - :window OR ends_at > :latest);

-- name: count_slots
SELECT count(*) FROM rate_slots WHERE account = :account;

-- name: slot_end
-- When the :k-th (from 0) earliest-ending call that counts ends (or is said to).
SELECT ends_at FROM rate_slots WHERE account = :account ORDER BY ends_at LIMIT 1 OFFSET :k;

-- name: take_slot
INSERT INTO rate_slots (account, ends_at) VALUES (:account, :ends_at) RETURNING id;

-- name: end_slots
-- :ends is a JSON array of [slot id, ended at]; an end later than :now is taken as :now.
UPDATE rate_slots SET ends_at = min(json_extract(e.value, '$[1]'), :now)
FROM json_each(:ends) AS e
WHERE rate_slots.id = json_extract(e.value, '$[0]');

-- name: count_slots_from
-- The slots that count until a window after :now at least (ended then or later, or in flight).
SELECT count(*) FROM rate_slots WHERE account = :account AND ends_at >= :now;

-- name: expire_waiters_slots
-- The slots set aside for waiters past their time, or said to wait past :latest (the clock
-- was set back since): never used, they stop counting.
DELETE FROM rate_slots WHERE id IN (
    SELECT j.value FROM rate_waiters AS w, json_each(w.ready) AS j
    WHERE w.account = :account AND (w.until <= :now OR w.until > :latest)
);

-- name: expire_waiters
DELETE FROM rate_waiters
WHERE account = :account AND (until <= :now OR until > :latest);

-- name: waiters
SELECT waiter, since, want, until, ready FROM rate_waiters WHERE account = :account;

-- name: drop_slots
DELETE FROM rate_slots WHERE id IN (SELECT value FROM json_each(:ids));

-- name: hand_over
-- Set-aside slots handed to their waiter: their calls start now. (The ids still counting.)
UPDATE rate_slots SET ends_at = :ends_at WHERE id IN (SELECT value FROM json_each(:ids))
RETURNING id;

-- name: set_aside
UPDATE rate_waiters SET ready = :ready, since = :since
WHERE account = :account AND waiter = :waiter;

-- name: set_waiting
INSERT INTO rate_waiters (account, waiter, since, want, until, ready)
VALUES (:account, :waiter, :since, :want, :until, '[]')
ON CONFLICT (account, waiter) DO UPDATE
SET since = excluded.since, want = excluded.want, until = excluded.until, ready = '[]';

-- name: stop_waiting_slots
DELETE FROM rate_slots WHERE id IN (
    SELECT j.value FROM rate_waiters AS w, json_each(w.ready) AS j
    WHERE w.account = :account AND w.waiter = :waiter
);

-- name: stop_waiting
DELETE FROM rate_waiters WHERE account = :account AND waiter = :waiter;

-- name: ping
INSERT INTO meta (key, value) VALUES ('last_ping', :now)
ON CONFLICT (key) DO UPDATE SET value = excluded.value;
