-- The sandbox's own tables. Uniqueness of email and phone is the database's job:
-- email_key is the lower-cased EmailAddress, phone_key the digits of Phone.
CREATE TABLE IF NOT EXISTS leads (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT NOT NULL UNIQUE,
    email_key   TEXT,
    phone_key   TEXT,
    mobile_key  TEXT,
    attrs       TEXT NOT NULL,
    created_on  TEXT NOT NULL,
    modified_on TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS leads_email_key ON leads (email_key);
CREATE UNIQUE INDEX IF NOT EXISTS leads_phone_key ON leads (phone_key);
CREATE INDEX IF NOT EXISTS leads_mobile_key ON leads (mobile_key);

CREATE TABLE IF NOT EXISTS visitors (
    id TEXT PRIMARY KEY
);

CREATE TABLE IF NOT EXISTS accounts (
    id   TEXT PRIMARY KEY,
    name TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS activities (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    id         TEXT NOT NULL UNIQUE,
    lead_id    TEXT NOT NULL,
    event      TEXT NOT NULL,
    created_on TEXT NOT NULL,
    data       TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS activities_lead ON activities (lead_id, seq);
