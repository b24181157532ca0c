-- storage-adapter schema (DESIGN §5), for Supabase or any Postgres the adapter cannot
-- run DDL on. With EXAI_DATABASE_URL the adapter creates exactly this itself at start-up
-- (store/tables.py); over Supabase REST it only checks that these tables exist.
-- Safe to run again: on a database from an older adapter it adds what is missing
-- (version 2: conversations.client_id, the owning client; existing rows get 'default').
--
-- Supabase: paste into the SQL editor and run once. Row Level Security: the adapter
-- uses SUPABASE_KEY; use the service-role key, or add policies for the role you use.

CREATE TABLE IF NOT EXISTS schema_version (
    version     integer PRIMARY KEY,
    applied_at  timestamptz NOT NULL
);

CREATE TABLE IF NOT EXISTS conversations (
    id               bigserial PRIMARY KEY,
    continuation_id  varchar(128) NOT NULL UNIQUE,
    client_id        varchar(64) NOT NULL DEFAULT 'default',
    title            text,
    metadata         jsonb NOT NULL,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL
);

CREATE TABLE IF NOT EXISTS messages (
    id               bigserial PRIMARY KEY,
    conversation_id  bigint NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    role             varchar(16) NOT NULL,
    content          text NOT NULL,
    metadata         jsonb NOT NULL,
    idempotency_key  varchar(255) NOT NULL UNIQUE,
    created_at       timestamptz NOT NULL,
    CONSTRAINT messages_role_check CHECK (role IN ('user', 'assistant', 'system', 'tool'))
);

CREATE INDEX IF NOT EXISTS messages_conversation_id_id_idx ON messages (conversation_id, id);

ALTER TABLE conversations
    ADD COLUMN IF NOT EXISTS client_id varchar(64) NOT NULL DEFAULT 'default';

INSERT INTO schema_version (version, applied_at) VALUES (2, now()) ON CONFLICT DO NOTHING;
