-- The dead-letter tool's own database: the audit trail of its actions and the notes per group.

-- Every action of the tool: who, when, what, on which selection, with what outcome. Append-only:
-- the trigger refuses UPDATE, DELETE and TRUNCATE, even from the table's owner.
CREATE TABLE dlq_history (
    id        bigserial PRIMARY KEY,
    at        timestamptz NOT NULL DEFAULT now(),
    operator  text NOT NULL,
    host      text NOT NULL,
    verb      text NOT NULL,
    queue     text,
    selection jsonb,
    outcome   text NOT NULL,
    counts    jsonb,
    run       uuid,
    detail    text
);
CREATE INDEX dlq_history_at ON dlq_history (at DESC, id DESC);

CREATE FUNCTION dlq_history_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'dlq_history is append-only';
END $$;
CREATE TRIGGER dlq_history_append_only BEFORE UPDATE OR DELETE ON dlq_history
    FOR EACH ROW EXECUTE FUNCTION dlq_history_is_append_only();
CREATE TRIGGER dlq_history_no_truncate BEFORE TRUNCATE ON dlq_history
    FOR EACH STATEMENT EXECUTE FUNCTION dlq_history_is_append_only();

-- The ticket of a group of dead letters (its fingerprint): status and the operator's text.
-- resolved_at is when it was last marked resolved; a later dead letter of the group reopens it.
CREATE TABLE dlq_notes (
    fingerprint text PRIMARY KEY,
    status      text NOT NULL CHECK (status IN ('open', 'investigating', 'resolved')),
    note        text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    updated_by  text NOT NULL,
    resolved_at timestamptz
);
