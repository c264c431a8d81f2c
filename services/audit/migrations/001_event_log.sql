-- The audit trail: every event published on petstore.events, once, never changed.
CREATE TABLE event_log (
    id             bigserial PRIMARY KEY,
    message_id     uuid NOT NULL UNIQUE,
    type           text NOT NULL,
    routing_key    text NOT NULL,
    source         text,
    correlation_id text,
    causation_id   text,
    traceparent    text,
    occurred_at    timestamptz,
    received_at    timestamptz NOT NULL DEFAULT now(),
    payload        jsonb NOT NULL
);
CREATE INDEX event_log_correlation ON event_log (correlation_id, id);

-- Append-only: the service role may insert, nobody may rewrite history.
CREATE FUNCTION event_log_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'event_log is append-only';
END $$;
CREATE TRIGGER event_log_append_only BEFORE UPDATE OR DELETE ON event_log
    FOR EACH ROW EXECUTE FUNCTION event_log_is_append_only();
