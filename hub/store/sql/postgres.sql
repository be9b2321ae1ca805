-- Named queries of the PostgreSQL event store. Each starts with a "-- name: NAME" line.
-- Parameters are positional ($1, $2, ...); lists travel as arrays (or one JSON value where
-- their items are lists of different lengths), so no query text is built at run time.
-- The tables mirror hub/store/sql/sqlite.sql: times are unix seconds (double precision),
-- read from the store's clock; for an event in 'sending', next_attempt_at is the end of its
-- lease, and with the store's clock shift (meta 'clock_shift') the lease's token: an outcome
-- given with a lease applies only while next_attempt_at + clock_shift is it, within 1e-3 s
-- (see sqlite.sql).

-- name: schema
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
-- A new database starts at the current version; an older one is migrated (migrate_1: see
-- PostgresStore.open).
INSERT INTO meta (key, value) VALUES ('schema_version', '2') ON CONFLICT (key) DO NOTHING;

-- One row per HTTP request as received: the raw body is stored once, however many
-- leads it carries.
CREATE TABLE IF NOT EXISTS deliveries (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    endpoint TEXT NOT NULL,
    received_at DOUBLE PRECISION NOT NULL,
    content_type TEXT NOT NULL,
    headers TEXT NOT NULL,              -- JSON object
    body BYTEA NOT NULL,                -- as received, or compressed: see body_format
    body_format SMALLINT NOT NULL DEFAULT 0  -- 0 as received, 1 a raw-deflate segment
);

-- One row per lead. document is NULL when it is exactly the parsed JSON body.
CREATE TABLE IF NOT EXISTS events (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery BIGINT NOT NULL REFERENCES deliveries (id),
    endpoint TEXT NOT NULL,
    delivery_id TEXT NOT NULL,
    document TEXT,                      -- JSON
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at DOUBLE PRECISION NOT NULL,  -- the lease end while 'sending'
    last_error TEXT,
    enrichment TEXT,                    -- JSON
    target TEXT,
    mapping TEXT,
    lead_id TEXT,
    lead_created SMALLINT,
    updated_at DOUBLE PRECISION NOT NULL,
    -- When `leadhub replay` last put the event back in the queue (NULL: never): the retry
    -- schedule's give_up_after counts from here, else from received_at.
    requeued_at DOUBLE PRECISION,
    -- 1 while the event's lead is known only after an API read and no route is recorded yet:
    -- it holds no later event back meanwhile (blockers).
    awaits_read SMALLINT NOT NULL DEFAULT 0,
    CONSTRAINT events_dedupe UNIQUE (endpoint, delivery_id)
);
CREATE INDEX IF NOT EXISTS events_due ON events (state, next_attempt_at);
-- Waiting events in id order: a claim walks this and stops after `limit` due ones.
CREATE INDEX IF NOT EXISTS events_ready ON events (id) WHERE state IN ('queued', 'retrying');
-- A delivery's events: a purge deletes a delivery's row once none is left, and the foreign
-- key is checked through it.
CREATE INDEX IF NOT EXISTS events_delivery ON events (delivery);

-- Identity keys (email, phone) of routed events, for per-lead ordering.
CREATE TABLE IF NOT EXISTS lead_keys (
    key TEXT NOT NULL,
    event BIGINT NOT NULL,
    PRIMARY KEY (key, event)
);
CREATE INDEX IF NOT EXISTS lead_keys_event ON lead_keys (event);

-- Calls made to each LeadSquared account, shared by every instance on this database (see
-- PostgresStore.take_slots; the same rules as SQLite's rate_slots).
CREATE TABLE IF NOT EXISTS rate_slots (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account TEXT NOT NULL,
    ends_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS rate_slots_account ON rate_slots (account, ends_at);

-- Processes waiting for slots of an account, and the slots set aside for each (`ready`):
-- hub.store.turns, the same rules as SQLite's rate_waiters.
CREATE TABLE IF NOT EXISTS rate_waiters (
    account TEXT NOT NULL,
    waiter TEXT NOT NULL,
    since DOUBLE PRECISION NOT NULL,
    want INTEGER NOT NULL,
    until DOUBLE PRECISION NOT NULL,
    ready BIGINT[] NOT NULL DEFAULT '{}',
    PRIMARY KEY (account, waiter)
);

-- Time no event was tried in: as SQLite's held_spans (hub/store/sql/sqlite.sql).
CREATE TABLE IF NOT EXISTS held_spans (
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    began DOUBLE PRECISION NOT NULL,
    ended DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (kind, name, began)
);

-- name: missing_objects
-- Of the tables and indexes the schema script makes ($1), those not in the store's schema: all
-- of them when the schema is not made, or the role may not use it (current_schema() is NULL).
-- None missing: open runs no DDL, so a role that does not own the tables (granted only what
-- the hub does with them) starts on tables another role made.
-- Also the connecting role, the schema, and whether the URL's schema ($2) is there but the
-- role may not use it (no USAGE: its tables are not seen), for open's messages.
SELECT coalesce(array_agg(n ORDER BY n), '{}'), current_user, current_schema(),
       coalesce((SELECT NOT has_schema_privilege(oid, 'USAGE')
                 FROM pg_namespace WHERE nspname = $2::text), false)
FROM unnest($1::text[]) AS n
WHERE current_schema() IS NULL
   OR to_regclass(quote_ident(current_schema()) || '.' || quote_ident(n)) IS NULL;

-- name: may_make
-- Where open would make the store's tables ($1: the URL's schema; NULL: the first schema of
-- the search path that exists), what the connecting role may do there: the database, whether
-- the schema exists, whether the role may make it (CREATE on the database) and tables in it
-- (CREATE on the schema), for open's message when it may not (PostgresStore._cannot_make).
SELECT current_database(), n.oid IS NOT NULL,
       has_database_privilege(current_database(), 'CREATE'),
       n.oid IS NOT NULL AND has_schema_privilege(n.oid, 'CREATE')
FROM (SELECT coalesce($1::text, current_schema()) AS name) AS s
LEFT JOIN pg_namespace AS n ON n.nspname = s.name;

-- name: missing_rights
-- What the connecting role may not do of what serve does, one line each: the privileges $2 (a
-- comma-separated list) on each table $1, and USAGE on the identity sequences of the tables
-- $3 (the writes draw ids with nextval, which needs USAGE or UPDATE on the sequence).
SELECT format('%s on table %I.%I', p, current_schema(), r.t)
FROM unnest($1::text[], $2::text[]) AS r (t, ps)
CROSS JOIN LATERAL unnest(string_to_array(r.ps, ',')) AS p
WHERE NOT has_table_privilege(format('%I.%I', current_schema(), r.t), p)
UNION ALL
SELECT format('USAGE on sequence %s', s)
FROM unnest($3::text[]) AS t
CROSS JOIN LATERAL pg_get_serial_sequence(format('%I.%I', current_schema(), t), 'id') AS s
WHERE NOT has_sequence_privilege(s, 'USAGE, UPDATE');

-- name: anothers_tables
-- Of the hub's events and meta tables, those in the store's schema without the hub's columns:
-- another application's tables of the same name (none when the schema is not made, or the
-- role may not use it: current_schema() is NULL).
SELECT x.t
FROM (VALUES ('events', 'state'), ('meta', 'key')) AS x (t, c)
CROSS JOIN LATERAL to_regclass(quote_ident(current_schema()) || '.' || x.t) AS r
WHERE r IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM pg_attribute AS a
                  WHERE a.attrelid = r AND a.attname = x.c AND NOT a.attisdropped)
ORDER BY x.t;

-- name: stores_elsewhere
-- The schemas of the search path, other than the one a new store would be made in
-- (current_schema(): the first of the path that exists), that hold an event store (the hub's
-- events table, with its state column, and a meta table), in the path's order.
SELECT n
FROM unnest(current_schemas(false)) WITH ORDINALITY AS p (n, i)
CROSS JOIN LATERAL to_regclass(quote_ident(n) || '.events') AS r
WHERE n <> current_schema()
  AND to_regclass(quote_ident(n) || '.meta') IS NOT NULL
  AND EXISTS (SELECT 1 FROM pg_attribute AS a
              WHERE a.attrelid = r AND a.attname = 'state' AND NOT a.attisdropped)
ORDER BY i;

-- name: schema_version
SELECT value FROM meta WHERE key = 'schema_version';

-- name: migrate_1
-- Version 1 to 2: the replay time (the give-up clock's start) and the API-read mark of
-- per-lead ordering. Adding a column with a constant default rewrites nothing.
ALTER TABLE events ADD COLUMN IF NOT EXISTS requeued_at DOUBLE PRECISION;
ALTER TABLE events ADD COLUMN IF NOT EXISTS awaits_read SMALLINT NOT NULL DEFAULT 0;
-- And the index of a delivery's events (the schema script's since c5a8bb9, no version bump):
-- serve's open makes it with any missing object, a command's migration did not, and a store
-- made before then and migrated by a command purged without it (each delivery's deletion
-- scanned every event for the foreign key) until a serve opened it.
CREATE INDEX IF NOT EXISTS events_delivery ON events (delivery);
UPDATE meta SET value = '2' WHERE key = 'schema_version';

-- name: find_id
SELECT 1 FROM events WHERE id = $1;

-- name: enqueue_batch
-- A delivery of several leads in one statement (one round trip: event by event, a delivery
-- of 1,000 leads took 2,000, 2 s at a 1 ms round trip). $1-$6 its deliveries row
-- (endpoint, received_at, content_type, headers, body, body_format), $7 its events' delivery
-- ids, $8 their documents, $9 now. One row per event, in order: (new, known), its new event's
-- id or else the id stored under its delivery id before this statement; both NULL when the
-- id came earlier in the delivery, or a concurrent transaction stored it meanwhile: the
-- caller looks it up then. The event ids are drawn in the leads' order, but the events go in
-- in the order of their delivery ids (see enqueue_many); the delivery row only if one is new.
WITH input AS (
    SELECT i.*, nextval(pg_get_serial_sequence('events', 'id')) AS event_id
    FROM unnest($7::text[], $8::text[]) WITH ORDINALITY AS i (delivery_id, document, n)
), row_id AS (
    SELECT nextval(pg_get_serial_sequence('deliveries', 'id')) AS id
), event AS (
    INSERT INTO events (id, delivery, endpoint, delivery_id, document, state, attempts,
                        next_attempt_at, updated_at)
    OVERRIDING SYSTEM VALUE
    SELECT i.event_id, r.id, $1::text, i.delivery_id, i.document, 'queued', 0,
           $9::double precision, $9::double precision
    FROM input AS i CROSS JOIN row_id AS r
    ORDER BY i.delivery_id COLLATE "C", i.n
    ON CONFLICT ON CONSTRAINT events_dedupe DO NOTHING
    RETURNING id
), delivery AS (
    INSERT INTO deliveries (id, endpoint, received_at, content_type, headers, body, body_format)
    OVERRIDING SYSTEM VALUE
    SELECT r.id, $1::text, $2::double precision, $3::text, $4::text, $5::bytea, $6::smallint
    FROM row_id AS r WHERE EXISTS (SELECT 1 FROM event)
)
SELECT e.id AS new, CASE WHEN e.id IS NULL THEN (
    SELECT x.id FROM events AS x WHERE x.endpoint = $1::text AND x.delivery_id = i.delivery_id
) END AS known
FROM input AS i LEFT JOIN event AS e ON e.id = i.event_id
ORDER BY i.n;

-- name: enqueue_many
-- Deliveries of one lead each, gathered from concurrent requests, in one statement (one round
-- trip, one commit). Nine arrays, one item per delivery: endpoint, received_at, content_type,
-- headers, body, body_format, delivery id, document, now. One row per item, in order:
-- (new, known): its new event's id, or else the id already stored under its delivery id
-- before this statement. Both NULL when the same delivery id came earlier in the batch, or a
-- concurrent transaction stored it meanwhile: the caller looks it up then.
-- The events go in first, each naming the delivery row drawn for it; only those inserted get
-- their delivery row (the foreign key is checked at the end of the statement). Their ids are
-- drawn in the deliveries' order, but they go in in the order of their (endpoint, delivery
-- id), as every write of events does (enqueue_batch): a write waits at an id another holds
-- uncommitted, and two writes taking shared ids in other orders each waited for the other
-- (a deadlock, which the server broke by aborting one: its deliveries answered 503).
WITH input AS (
    SELECT i.*, nextval(pg_get_serial_sequence('deliveries', 'id')) AS row_id,
           nextval(pg_get_serial_sequence('events', 'id')) AS event_id
    FROM unnest($1::text[], $2::double precision[], $3::text[], $4::text[], $5::bytea[],
                $6::smallint[], $7::text[], $8::text[], $9::double precision[])
        WITH ORDINALITY AS i (endpoint, received_at, content_type, headers, body, body_format,
                              delivery_id, document, now, n)
), event AS (
    INSERT INTO events (id, delivery, endpoint, delivery_id, document, state, attempts,
                        next_attempt_at, updated_at)
    OVERRIDING SYSTEM VALUE
    SELECT event_id, row_id, endpoint, delivery_id, document, 'queued', 0, now, now
    FROM input
    ORDER BY endpoint COLLATE "C", delivery_id COLLATE "C", n
    ON CONFLICT ON CONSTRAINT events_dedupe DO NOTHING
    RETURNING id, delivery
), delivery AS (
    INSERT INTO deliveries (id, endpoint, received_at, content_type, headers, body, body_format)
    OVERRIDING SYSTEM VALUE
    SELECT i.row_id, i.endpoint, i.received_at, i.content_type, i.headers, i.body, i.body_format
    FROM input AS i JOIN event AS e ON e.delivery = i.row_id
)
SELECT e.id AS new, CASE WHEN e.id IS NULL THEN (
    SELECT x.id FROM events AS x WHERE x.endpoint = i.endpoint AND x.delivery_id = i.delivery_id
) END AS known
FROM input AS i LEFT JOIN event AS e ON e.delivery = i.row_id
ORDER BY i.n;

-- name: find_event
SELECT id FROM events WHERE endpoint = $1 AND delivery_id = $2;

-- name: lock_claims
-- Claims take turns across every instance (each a few statements): when one returns, every
-- event an earlier claim took is committed 'sending', so a later event's ordering check sees
-- it (blockers). Rows other transactions write (outcomes) are still skipped, not waited for.
-- Each lock's key names the schema the tables are in (current_schema(): the URL's ?schema=,
-- else the default): hubs on other schemas of the database share no rows, so no turns.
-- Answers the server's clock once the turn is ours (a ServerTime clock far from it is
-- measured again: the server's clock was stepped).
SELECT extract(epoch FROM clock_timestamp())::float8
FROM pg_advisory_xact_lock(hashtextextended('leadhub.claims:' || current_schema(), 0));

-- name: clock_mark
-- The latest time a claim read (as text; NULL: none yet), to tell a step back of the store's
-- clock by, and the clock shift (as text; NULL: 0). Read in a claim's turn (lock_claims).
SELECT (SELECT value FROM meta WHERE key = 'clock_mark'),
       (SELECT value FROM meta WHERE key = 'clock_shift');

-- name: set_clock_mark
INSERT INTO meta (key, value) VALUES ('clock_mark', $1)
ON CONFLICT (key) DO UPDATE SET value = excluded.value;

-- name: set_clock_shift
INSERT INTO meta (key, value) VALUES ('clock_shift', $1)
ON CONFLICT (key) DO UPDATE SET value = excluded.value;

-- name: clock_stepped_back
-- The store's clock went back $1 seconds (now $2): the waiting events' due times go back as
-- much, so they wait what they were meant to, not the step as well (as sqlite.sql's).
UPDATE events SET next_attempt_at = next_attempt_at - $1
WHERE state IN ('queued', 'retrying') AND next_attempt_at > $2;

-- name: leases_stepped_back
-- ... and so does every lease end (its token is its end plus the clock shift, which grows by
-- $1 in the same transaction): a dead worker's lease ends when it was meant to, and a live
-- holder keeps exactly the time it had left.
-- A negative $1 is a step forward a claim's store object saw (hub.store.base.clock_step): the
-- lease ends go forward as much and the shift goes down, so a live holder is not taken for
-- dead and its lease claimed (and its lead sent) again while its call is in flight.
UPDATE events SET next_attempt_at = next_attempt_at - $1 WHERE state = 'sending';

-- name: stepped_accounts
-- The accounts whose rate slots or waiters a step back moves ($1 now), in the order their
-- locks (lock_account) are taken: the same for every claim, and a claim holds no account's
-- lock while it waits for another's.
SELECT account FROM rate_slots WHERE ends_at > $1
UNION
SELECT account FROM rate_waiters WHERE until > $1
ORDER BY account;

-- name: slots_stepped_back
-- ... and so do the account's ($3) rate slots said to end after $2 (the calls of the window
-- before the step, ended or in flight), as sqlite.sql's: left as they were, they kept the
-- window full for the step as well, and no call to the account went out meanwhile.
UPDATE rate_slots SET ends_at = ends_at - $1 WHERE account = $3 AND ends_at > $2;

-- name: waiters_stepped_back
UPDATE rate_waiters SET since = since - $1, until = until - $1 WHERE account = $3 AND until > $2;

-- name: claimable_waiting
-- $1 now, $2 targets left alone, $3 limit, $4 endpoints whose unrouted events are left alone,
-- $5 the claimer's endpoints (NULL: no such check): an event of another endpoint is claimed
-- only while no instance has taken it up since it was queued or replayed (as sqlite.sql's
-- claimable: no last error written since, no route, no read started).
SELECT id FROM events
WHERE state IN ('queued', 'retrying') AND next_attempt_at <= $1
  AND (target IS NULL OR target <> ALL ($2::text[]))
  AND (target IS NOT NULL OR endpoint <> ALL ($4::text[]))
  AND ($5::text[] IS NULL
       OR (target IS NULL AND awaits_read = 0
           AND (last_error IS NULL OR updated_at = requeued_at))
       OR endpoint = ANY ($5::text[]))
ORDER BY id
LIMIT $3
FOR UPDATE SKIP LOCKED;

-- name: claimable_expired
-- Claimed events whose lease ran out (few: found by state and due time).
SELECT id FROM events
WHERE state = 'sending' AND next_attempt_at <= $1
  AND (target IS NULL OR target <> ALL ($2::text[]))
  AND (target IS NOT NULL OR endpoint <> ALL ($4::text[]))
  AND ($5::text[] IS NULL
       OR (target IS NULL AND awaits_read = 0
           AND (last_error IS NULL OR updated_at = requeued_at))
       OR endpoint = ANY ($5::text[]))
ORDER BY id
LIMIT $3
FOR UPDATE SKIP LOCKED;

-- name: mark_claimed
UPDATE events
SET state = 'sending', attempts = attempts + 1, next_attempt_at = $2, updated_at = $3
WHERE id = ANY ($1::bigint[]);

-- name: ack
UPDATE events
SET state = 'delivered', lead_id = $2, lead_created = $3, last_error = NULL, updated_at = $4
WHERE id = $1
  AND ($5::double precision IS NULL
       OR (state = 'sending'
           AND abs(next_attempt_at - $5
                   + coalesce((SELECT value::float8 FROM meta WHERE key = 'clock_shift'), 0))
               < 1e-3));

-- name: ack_many
-- One row per ack in five arrays (id, lead id, created, lease, delivered at: null for now,
-- never later than now); the ids written come back.
UPDATE events AS e
SET state = 'delivered', lead_id = a.lead_id, lead_created = a.created, last_error = NULL,
    updated_at = least(coalesce(a.at, $5), $5)
FROM unnest($1::bigint[], $2::text[], $3::smallint[], $4::double precision[],
            $6::double precision[])
    AS a (id, lead_id, created, lease, at)
WHERE e.id = a.id
  AND (a.lease IS NULL OR (e.state = 'sending'
       AND abs(e.next_attempt_at - a.lease
               + coalesce((SELECT value::float8 FROM meta WHERE key = 'clock_shift'), 0)) < 1e-3))
RETURNING e.id;

-- name: retry
UPDATE events
SET state = 'retrying', next_attempt_at = $2, last_error = $3, updated_at = $4
WHERE id = $1
  AND ($5::double precision IS NULL
       OR (state = 'sending'
           AND abs(next_attempt_at - $5
                   + coalesce((SELECT value::float8 FROM meta WHERE key = 'clock_shift'), 0))
               < 1e-3));

-- name: release
-- Only a claimed ('sending') event has an attempt to give back.
UPDATE events
SET state = CASE
        WHEN (CASE WHEN state = 'sending' THEN attempts - 1 ELSE attempts END) > 0
        THEN 'retrying' ELSE 'queued' END,
    attempts = CASE WHEN state = 'sending' THEN greatest(attempts - 1, 0) ELSE attempts END,
    next_attempt_at = $2,
    last_error = coalesce($3, last_error),
    updated_at = $4
WHERE id = $1
  AND ($5::double precision IS NULL
       OR (state = 'sending'
           AND abs(next_attempt_at - $5
                   + coalesce((SELECT value::float8 FROM meta WHERE key = 'clock_shift'), 0))
               < 1e-3));

-- name: finish
UPDATE events SET state = $2, last_error = $3, updated_at = $4
WHERE id = $1
  AND ($5::double precision IS NULL
       OR (state = 'sending'
           AND abs(next_attempt_at - $5
                   + coalesce((SELECT value::float8 FROM meta WHERE key = 'clock_shift'), 0))
               < 1e-3));

-- name: set_routes
-- One row per route in three arrays (id, target, mapping); the ids found come back.
UPDATE events AS e
SET target = r.target, mapping = r.mapping, awaits_read = 0, updated_at = $4
FROM unnest($1::bigint[], $2::text[], $3::text[]) AS r (id, target, mapping)
WHERE e.id = r.id
RETURNING e.id;

-- name: mark_reading
-- The events of $1 await an API read before their lead is known.
UPDATE events SET awaits_read = 1 WHERE id = ANY ($1::bigint[]) AND target IS NULL;

-- name: delete_lead_keys
DELETE FROM lead_keys WHERE event = ANY ($1::bigint[]);

-- name: insert_lead_keys
INSERT INTO lead_keys (key, event)
SELECT k.key, k.event FROM unnest($1::text[], $2::bigint[]) AS k (key, event)
ON CONFLICT DO NOTHING;

-- name: blockers
-- Per-lead ordering for a batch. $1 is a JSON array of [event id, [lead key, ...]]; one row
-- per event: its blocker is the earliest earlier event still pending sharing one of its keys,
-- or else, if earlier still, the earliest earlier event claimed whose keys are not recorded
-- yet (it may be the same lead: every later event waits for its routes, a few milliseconds;
-- one awaiting an API read is not counted, see awaits_read). Key by key, from lead_keys'
-- primary key (key, event) in event order to the first pending event: the walk is over that
-- lead's own earlier events, never the whole table; the unrouted ones are among the claimed
-- events (events_due's 'sending' rows: those in flight). Only claims made after $2 count as
-- being routed (hub.store.base.ROUTING_GRACE): an older unrouted claim is one whose instance
-- died (kill -9) or lost the store between claim and routes, and it would hold back every
-- later event, of every lead and target on every instance, until its lease ends.
SELECT a.asker, LEAST((
    SELECT min(first.id)
    FROM jsonb_array_elements_text(a.keys) AS wanted (key)
    CROSS JOIN LATERAL (
        SELECT e.id
        FROM lead_keys AS k
        JOIN events AS e ON e.id = k.event
        WHERE k.key = wanted.key
          AND k.event < a.asker
          AND e.state IN ('queued', 'retrying', 'sending')
        ORDER BY k.event
        LIMIT 1
    ) AS first
), CASE WHEN u.first < a.asker THEN u.first END) AS blocker
FROM (
    SELECT (v ->> 0)::bigint AS asker, v -> 1 AS keys FROM jsonb_array_elements($1::jsonb) AS v
) AS a
CROSS JOIN (
    -- OFFSET 0 keeps min() from walking the primary key from the oldest event up
    SELECT min(s.id) AS first FROM (
        SELECT id FROM events
        WHERE state = 'sending' AND target IS NULL AND awaits_read = 0
          AND updated_at > $2::double precision
        OFFSET 0
    ) AS s
) AS u;

-- name: set_enrichment
UPDATE events SET enrichment = $2, updated_at = $3 WHERE id = $1;

-- name: event_rows
-- Events by id, their columns in the order hub.store.rows.event_of reads (as SQLite's
-- event_rows view has them), lead keys joined by \x1f.
SELECT
    e.id, e.endpoint, e.delivery_id, d.received_at, d.body, d.body_format,
    d.content_type, d.headers, e.document, e.state, e.attempts, e.next_attempt_at,
    e.last_error, e.enrichment, e.target, e.mapping,
    (SELECT string_agg(k.key, chr(31)) FROM lead_keys AS k WHERE k.event = e.id),
    e.lead_id, e.lead_created, e.updated_at, e.requeued_at
FROM events AS e JOIN deliveries AS d ON d.id = e.delivery
WHERE e.id = ANY ($1::bigint[])
ORDER BY e.id;

-- name: list_ids
SELECT e.id FROM events AS e
WHERE ($1::text IS NULL OR e.state = $1) AND ($2::text IS NULL OR e.endpoint = $2)
  AND ($4::double precision IS NULL
       OR (SELECT d.received_at FROM deliveries AS d WHERE d.id = e.delivery) >= $4)
ORDER BY e.id DESC
LIMIT $3;

-- name: list_page
-- A page of `leadhub events`, newest first: ids up to $5 (keyset pagination: the primary
-- key's range is where the scan starts, however deep the page), only the columns it
-- prints. The body (for a document that is the body) only with $6, and only when needed;
-- the enrichment (the lead an API read fetched) only with $6.
SELECT e.id, e.endpoint, e.delivery_id, d.received_at, e.state, e.attempts,
       e.next_attempt_at, e.target, e.mapping, e.lead_id, e.lead_created, e.last_error,
       e.updated_at, CASE WHEN $6::boolean THEN e.document END,
       CASE WHEN $6::boolean AND e.document IS NULL THEN d.body END, d.body_format,
       e.requeued_at, CASE WHEN $6::boolean THEN e.enrichment END
FROM events AS e JOIN deliveries AS d ON d.id = e.delivery
WHERE e.id <= $5::bigint
  AND ($1::text IS NULL OR e.state = $1) AND ($2::text IS NULL OR e.endpoint = $2)
  AND ($4::double precision IS NULL OR d.received_at >= $4)
ORDER BY e.id DESC
LIMIT $3;

-- name: counts
SELECT state, count(*) FROM events GROUP BY state;

-- name: counts_of
-- Only these states, through events_due (whose first column is the state): as dear as the
-- events counted, where counts reads every event. (As = ANY of the array, the planner reads
-- how many each state holds; a subquery per state of unnest() it took for a third of the
-- table each, and read them all six times over.)
SELECT state, count(*) FROM events WHERE state = ANY($1::text[]) GROUP BY state;

-- name: replayable
-- What replay would requeue (its dry run): the same selection, nothing changed. $1: the
-- states taken (hub.store.base.replayed_states: 'delivered' only when named); $4, when not
-- NULL, the earliest receipt time taken.
SELECT count(*) FROM events
WHERE state = ANY ($1::text[])
  AND ($2::bigint[] IS NULL OR id = ANY ($2::bigint[]))
  AND ($3::text IS NULL OR endpoint = $3)
  AND ($4::double precision IS NULL
       OR (SELECT d.received_at FROM deliveries AS d WHERE d.id = events.delivery) >= $4);

-- name: replay_ids
-- What replay takes (the selection of replayable above), in id order: read once, then
-- requeued a step at a time (requeue).
SELECT id FROM events
WHERE state = ANY ($1::text[])
  AND ($2::bigint[] IS NULL OR id = ANY ($2::bigint[]))
  AND ($3::text IS NULL OR endpoint = $3)
  AND ($4::double precision IS NULL
       OR (SELECT d.received_at FROM deliveries AS d WHERE d.id = events.delivery) >= $4)
ORDER BY id;

-- name: requeue
-- One step of a replay: the events of $1 still in one of the states $2 go back to the queue.
-- The retry schedule starts over: no attempts, and give_up_after counts from now ($3).
UPDATE events
SET state = 'queued', attempts = 0, next_attempt_at = $3, target = NULL, mapping = NULL,
    lead_id = NULL, lead_created = NULL, requeued_at = $3, awaits_read = 0, updated_at = $3
WHERE id = ANY ($1::bigint[])
  AND state = ANY ($2::text[])
RETURNING id;

-- name: purge_window
-- A purge's next step: the last id of the $2 events after id $1, and the earliest time one
-- of them was received.
SELECT max(e.id), min(d.received_at)
FROM (SELECT id, delivery FROM events WHERE id > $1 ORDER BY id LIMIT $2) AS e
JOIN deliveries AS d ON d.id = e.delivery;

-- name: newest_received
-- When the event of the largest id was received (a purge's walk: did the clock go back?).
SELECT d.received_at FROM events AS e JOIN deliveries AS d ON d.id = e.delivery
ORDER BY e.id DESC LIMIT 1;

-- name: lock_purge
-- One purge step at a time across instances: two steps deleting different events of one
-- delivery would each still see the other's event, and neither would delete the delivery.
SELECT pg_advisory_xact_lock(hashtextextended('leadhub.purge:' || current_schema(), 0));

-- name: purgeable_events
-- The events of one step that a purge takes, locked (a replay waits) until delete_events
-- deletes them in the same transaction, or a dry run has counted them.
SELECT id, delivery FROM events
WHERE id > $1 AND id <= $2
  AND state = ANY ($3::text[])
  AND updated_at < $4
  AND ($5::text IS NULL OR endpoint = $5)
FOR UPDATE;

-- name: purgeable_count
-- What purgeable_events takes, counted for a dry run: locking nothing, it also runs on a
-- standby (read-only transactions take no row lock: FOR UPDATE refused the dry run there).
SELECT count(*) FROM events
WHERE id > $1 AND id <= $2
  AND state = ANY ($3::text[])
  AND updated_at < $4
  AND ($5::text IS NULL OR endpoint = $5);

-- name: delete_events
DELETE FROM events WHERE id = ANY ($1::bigint[]);

-- name: purge_deliveries
-- Of the deliveries whose events a purge deleted, those left without any.
DELETE FROM deliveries AS d
WHERE d.id = ANY ($1::bigint[])
  AND NOT EXISTS (SELECT 1 FROM events AS e WHERE e.delivery = d.id);

-- name: next_due
SELECT min(due) FROM (
    SELECT min(next_attempt_at) AS due FROM events WHERE state = 'queued'
    UNION ALL
    SELECT min(next_attempt_at) FROM events WHERE state = 'retrying'
    UNION ALL
    SELECT min(next_attempt_at) FROM events WHERE state = 'sending'
) AS t;

-- name: resume_held
-- The waiting events a pause of one of the targets $2 put back (their last error begins
-- with $3, hub.store.models.PAUSE_HELD) are due now ($1): the target is usable again.
UPDATE events SET next_attempt_at = $1, updated_at = $1
WHERE state IN ('queued', 'retrying') AND next_attempt_at > $1
  AND target = ANY ($2::text[])
  AND starts_with(last_error, $3);

-- name: keep_span
INSERT INTO held_spans (kind, name, began, ended) VALUES ($1, $2, $3, $4)
ON CONFLICT (kind, name, began) DO UPDATE SET ended = excluded.ended;

-- name: prune_spans
-- All but the $3 latest spans of kind $1 and name $2.
DELETE FROM held_spans WHERE kind = $1 AND name = $2 AND began < (
    SELECT began FROM held_spans WHERE kind = $1 AND name = $2
    ORDER BY began DESC LIMIT 1 OFFSET $3 - 1
);

-- name: kept_spans
SELECT name, began, ended FROM held_spans WHERE kind = $1 AND name = ANY ($2::text[])
ORDER BY name, began;

-- name: resume_reads
-- The events of the endpoints $2 retried after their lead read failed (retrying, no lead
-- stored, the read's error: hub.dispatch.enrich's '... fetch failed: ...') are due now ($1):
-- a reload changed how those endpoints read (a fixed token). An event with no lead whose
-- send failed (a LinkedIn notice of a deleted lead, which has none to read) keeps its backoff.
-- Queued: put back untried while a proxy refused the endpoint's reads (its error theirs).
UPDATE events SET next_attempt_at = $1, updated_at = $1
WHERE state IN ('retrying', 'queued') AND next_attempt_at > $1 AND enrichment IS NULL
  AND endpoint = ANY ($2::text[]) AND strpos(last_error, ' fetch failed: ') > 0;

-- name: lock_account
-- Serialises take_slots per account across every instance on this schema (whose rate_slots
-- they count), until the transaction ends. (A schema name holds no ':'.)
SELECT pg_advisory_xact_lock(
    hashtextextended('leadhub.rate_slots:' || current_schema() || ':' || $1, 0)
);

-- name: expire_slots
-- $1 account, $2 now, $3 window, $4 latest: slots of calls that ended a window ago no longer
-- count, nor do slots said to end after $4 (the wall clock was set back since).
DELETE FROM rate_slots
WHERE account = $1
  AND (ends_at <= $2::double precision - $3::double precision OR ends_at > $4);

-- name: count_slots
SELECT count(*) FROM rate_slots WHERE account = $1;

-- name: slot_end
-- When the $2-th (from 0) earliest-ending call that counts ends (or is said to).
SELECT ends_at FROM rate_slots WHERE account = $1 ORDER BY ends_at LIMIT 1 OFFSET $2;

-- name: take_slots
INSERT INTO rate_slots (account, ends_at)
SELECT $1::text, $2::double precision FROM generate_series(1, $3::integer)
RETURNING id;

-- name: end_slots
-- $1 slot ids, $2 when each call ended (one later than $3, now, is taken as now).
UPDATE rate_slots AS s SET ends_at = least(e.at, $3)
FROM unnest($1::bigint[], $2::double precision[]) AS e (id, at)
WHERE s.id = e.id;

-- name: count_slots_from
-- $1 account, $2 now: the slots that count until a window after $2 at least (ended then or
-- later, or in flight).
SELECT count(*) FROM rate_slots WHERE account = $1 AND ends_at >= $2::double precision;

-- name: expire_waiters_slots
-- $1 account, $2 now, $3 latest: the slots set aside for waiters past their time, or said to
-- wait past $3 (the clock was set back since): never used, they stop counting.
DELETE FROM rate_slots WHERE id IN (
    SELECT unnest(ready) FROM rate_waiters
    WHERE account = $1 AND (until <= $2 OR until > $3)
);

-- name: expire_waiters
DELETE FROM rate_waiters WHERE account = $1 AND (until <= $2 OR until > $3);

-- name: waiters
SELECT waiter, since, want, until, ready FROM rate_waiters WHERE account = $1;

-- name: drop_slots
DELETE FROM rate_slots WHERE id = ANY($1::bigint[]);

-- name: hand_over
-- Set-aside slots handed to their waiter: their calls start now. (The ids still counting.)
UPDATE rate_slots SET ends_at = $2 WHERE id = ANY($1::bigint[]) RETURNING id;

-- name: set_aside
UPDATE rate_waiters SET ready = $3, since = $4 WHERE account = $1 AND waiter = $2;

-- name: set_waiting
INSERT INTO rate_waiters (account, waiter, since, want, until, ready)
VALUES ($1, $2, $3, $4, $5, '{}')
ON CONFLICT (account, waiter) DO UPDATE
SET since = excluded.since, want = excluded.want, until = excluded.until, ready = '{}';

-- name: stop_waiting_slots
DELETE FROM rate_slots WHERE id IN (
    SELECT unnest(ready) FROM rate_waiters WHERE account = $1 AND waiter = $2
);

-- name: stop_waiting
DELETE FROM rate_waiters WHERE account = $1 AND waiter = $2;

-- name: server_time
-- The server's wall clock now (unix seconds), not the transaction's start: the hub's times
-- are the database's (hub.clock.ServerTime).
SELECT extract(epoch FROM clock_timestamp())::float8;

-- name: durability
-- What the server does at a commit for this session: a delivery is answered 200 once its
-- transaction committed, so the commit must reach the disk (PostgresStore._commit_durably).
SELECT current_setting('synchronous_commit'), current_setting('fsync'),
       current_setting('full_page_writes');

-- name: standby_wait
-- What the hub's commits wait for (PostgresStore.commit_wait): its sessions ($1: their
-- application_name) in this database whose commit has waited over a second for a
-- synchronous standby's confirmation (wait event SyncRep); the setting naming the standbys
-- waited for; the standbys connected that are synchronous (sync or quorum), and those whose
-- state is hidden from this role (without pg_read_all_stats: any role sees that they are);
-- and the lock_timeout the hub's sessions get from the role, the database or the URL.
SELECT
    (SELECT count(*) FROM pg_stat_activity
     WHERE application_name = $1 AND datname = current_database() AND wait_event = 'SyncRep'
       AND query_start < clock_timestamp() - interval '1 second'),
    current_setting('synchronous_standby_names'),
    (SELECT count(*) FROM pg_stat_replication WHERE sync_state IN ('sync', 'quorum')),
    (SELECT count(*) FROM pg_stat_replication WHERE sync_state IS NULL),
    current_setting('lock_timeout');

-- name: lock_waits
-- The hub's sessions ($1: their application_name) in this database whose statement has
-- waited over a second for a lock (wait event type Lock: a DBA's CREATE INDEX without
-- CONCURRENTLY, a session left idle in its transaction after a LOCK TABLE or a write of the
-- same row, another instance's migration), one row per session holding it up: the waiting
-- pid; the relation waited for (a table's lock, or the row lock's tuple); whether it waits
-- for the store's schema lock (advisory; $2: the URL's schema, NULL: the search path's,
-- as _SCHEMA_LOCK keys it: another instance making or migrating the tables); the holder's
-- pid and, where this role may see them, its application and state; whether the holder
-- holds the schema lock itself (an instance opening the store), and whether it is itself
-- one of the waiting sessions (a link of the chain, not its end). Not an advisory lock's
-- wait otherwise: the instances' turns at purging, claiming and an account's calls, which
-- hold up no insert (named, a probe timed out for another reason was told to end a purge's
-- transaction).
WITH key AS (
    SELECT hashtextextended('leadhub.schema:' || coalesce($2::text, current_schema(), ''), 0) AS k
), schema_lock AS (
    SELECT d.oid AS database, ((k >> 32) & 4294967295)::oid AS classid,
           (k & 4294967295)::oid AS objid
    FROM pg_database AS d, key WHERE d.datname = current_database()
), locked AS (
    SELECT a.pid,
           EXISTS (SELECT 1 FROM pg_locks AS l, schema_lock AS k
                   WHERE l.pid = a.pid AND NOT l.granted AND l.locktype = 'advisory'
                     AND l.database = k.database AND l.classid = k.classid
                     AND l.objid = k.objid AND l.objsubid = 1) AS on_schema
    FROM pg_stat_activity AS a
    WHERE a.application_name = $1 AND a.datname = current_database()
      AND a.wait_event_type = 'Lock'
      AND a.query_start < clock_timestamp() - interval '1 second'
)
SELECT
    w.pid,
    (SELECT l.relation::regclass::text FROM pg_locks AS l
     WHERE l.pid = w.pid AND l.relation IS NOT NULL
       AND (NOT l.granted OR l.locktype = 'tuple')
     ORDER BY l.granted LIMIT 1),
    w.on_schema,
    b.pid,
    s.application_name,
    s.state,
    EXISTS (SELECT 1 FROM pg_locks AS l, schema_lock AS k
            WHERE l.pid = b.pid AND l.granted AND l.locktype = 'advisory'
              AND l.database = k.database AND l.classid = k.classid
              AND l.objid = k.objid AND l.objsubid = 1),
    b.pid IN (SELECT pid FROM locked)
FROM locked AS w
LEFT JOIN LATERAL unnest(pg_blocking_pids(w.pid)) AS b (pid) ON true
LEFT JOIN pg_stat_activity AS s ON s.pid = b.pid
WHERE w.on_schema OR NOT EXISTS (
    SELECT 1 FROM pg_locks AS l WHERE l.pid = w.pid AND NOT l.granted AND l.locktype = 'advisory')
ORDER BY w.pid, b.pid;

-- name: lock_holders
-- The sessions holding a lock on the store's tables that every insert waits for (a mode
-- that conflicts with ROW EXCLUSIVE: SHARE and above), read after a lock_timeout cancelled
-- a statement of the hub's, whose wait is then over and tells nothing: the table, the mode,
-- the holder's pid and, where this role may see them, its application and state, and
-- whether it holds the store's schema lock (an instance opening the store). $1 is the URL's
-- schema (NULL: the look's own search path, the pool's).
WITH key AS (
    SELECT hashtextextended('leadhub.schema:' || coalesce($1::text, current_schema(), ''), 0) AS k
), schema_lock AS (
    SELECT d.oid AS database, ((k >> 32) & 4294967295)::oid AS classid,
           (k & 4294967295)::oid AS objid
    FROM pg_database AS d, key WHERE d.datname = current_database()
), tables AS (
    SELECT to_regclass(coalesce(quote_ident($1::text) || '.', '') || t) AS oid
    FROM unnest(ARRAY['events', 'deliveries', 'meta']) AS t
)
SELECT
    l.relation::regclass::text,
    l.mode,
    l.pid,
    s.application_name,
    s.state,
    EXISTS (SELECT 1 FROM pg_locks AS h, schema_lock AS k
            WHERE h.pid = l.pid AND h.granted AND h.locktype = 'advisory'
              AND h.database = k.database AND h.classid = k.classid
              AND h.objid = k.objid AND h.objsubid = 1)
FROM pg_locks AS l
LEFT JOIN pg_stat_activity AS s ON s.pid = l.pid
WHERE l.granted AND l.locktype = 'relation' AND l.pid <> pg_backend_pid()
  AND l.relation IN (SELECT oid FROM tables WHERE oid IS NOT NULL)
  AND l.mode IN ('ShareLock', 'ShareRowExclusiveLock', 'ExclusiveLock', 'AccessExclusiveLock')
ORDER BY l.pid, l.relation;

-- name: ping_locks
-- The lock a delivery's insert takes on the tables it writes (ping's first statement): a
-- ping waits where every webhook's insert waits. A lock that blocks inserts and not reads
-- (a DBA's CREATE INDEX without CONCURRENTLY, LOCK TABLE ... IN SHARE MODE, a session left
-- idle in its transaction after one) answered every webhook 503 while the ping, a write of
-- meta alone, passed: /readyz 200 and leadhub_store_up 1 throughout. Conflicts with none of
-- the hub's own statements nor autovacuum's.
LOCK TABLE events, deliveries IN ROW EXCLUSIVE MODE;

-- name: ping
INSERT INTO meta (key, value) VALUES ('last_ping', $1)
ON CONFLICT (key) DO UPDATE SET value = excluded.value;

-- name: frozen_holders
-- The hub's sessions ($1: their application_name) in this database frozen in the middle of a
-- statement while they hold up a session of the hub waiting for a lock, or hold a turn:
-- active, but waiting for their client to send the rest of it (wait event ClientRead) for
-- over $2 seconds, inside a transaction. asyncpg prepares a statement (Parse, Describe) and
-- only then sends its Bind, Execute and Sync: a client that froze in between (a paused VM, a
-- stopped process, a network cut its kernel has not seen) leaves its session active, so
-- neither the server's idle_in_transaction_session_timeout nor statement_timeout ever ends
-- it, and the turns it holds (claims, an account's calls) held up every other instance until
-- its TCP connection failed: hours, or never for a stopped process. Each one's pid, client
-- address, and seconds since it last sent anything and since its transaction began.
SELECT h.pid, host(h.client_addr),
       extract(epoch FROM clock_timestamp() - h.state_change)::float8,
       extract(epoch FROM clock_timestamp() - h.xact_start)::float8
FROM pg_stat_activity AS h
WHERE h.application_name = $1 AND h.datname = current_database()
  AND h.state = 'active' AND h.wait_event = 'ClientRead' AND h.xact_start IS NOT NULL
  AND h.state_change < clock_timestamp() - make_interval(secs => $2)
  AND (EXISTS (SELECT 1 FROM pg_stat_activity AS w
               WHERE w.application_name = $1 AND w.datname = current_database()
                 AND w.wait_event_type = 'Lock' AND h.pid = ANY (pg_blocking_pids(w.pid)))
       -- or holds a turn (the hub's advisory locks are its turns), which a lock_timeout
       -- may have cut every wait for short of being seen
       OR EXISTS (SELECT 1 FROM pg_locks AS l
                  WHERE l.pid = h.pid AND l.locktype = 'advisory' AND l.granted))
ORDER BY h.pid;

-- name: turn_holders
-- The sessions holding up the hub's sessions ($1: their application_name) in this database
-- that wait for a turn (an advisory lock): each one's pid and, where this role may see them,
-- its application, state, wait event and seconds in that state.
SELECT DISTINCT b.pid, s.application_name, s.state, s.wait_event,
       extract(epoch FROM clock_timestamp() - s.state_change)::float8
FROM pg_stat_activity AS w
CROSS JOIN LATERAL unnest(pg_blocking_pids(w.pid)) AS b (pid)
LEFT JOIN pg_stat_activity AS s ON s.pid = b.pid
WHERE w.application_name = $1 AND w.datname = current_database()
  AND w.wait_event_type = 'Lock' AND w.wait_event = 'advisory'
ORDER BY b.pid;
