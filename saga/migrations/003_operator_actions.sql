-- The saga tool's audit (saga/tool/sagatool.h): every operator action on a saga, who, when, why,
-- what it did and how it ended. Append-only like saga_steps: UPDATE, DELETE and TRUNCATE are
-- refused, even for the table's owner.
--
-- One action on one saga has an action_id shared by its rows; the step it applied carries the
-- same id as message_id in saga_steps, and the commands it wrote carry it as causation_id in
-- the outbox. Outcomes: 'dry-run', 'refused' (the machine ignores the input in that state),
-- 'failed' (nothing committed), 'sent' (written in the step's own transaction), then a second
-- row 'confirmed' or 'not-confirmed' once the tool has checked, within --wait, that the commands
-- were published and the saga moved on.
CREATE TABLE saga_operator_actions (
    id          bigserial PRIMARY KEY,
    action_id   uuid NOT NULL,
    at          timestamptz NOT NULL DEFAULT now(),
    operator    text NOT NULL,
    host        text NOT NULL,
    verb        text NOT NULL CHECK (verb IN ('retry', 'compensate', 'resume')),
    order_id    uuid NOT NULL,
    reason      text NOT NULL CHECK (reason <> ''),
    dry_run     boolean NOT NULL,
    from_status text,                   -- the saga's status before (NULL: not read)
    to_status   text,                   -- after the step, or what a dry run would reach
    version     int,                    -- the saga's version after the step (or as seen)
    outcome     text NOT NULL CHECK (outcome IN ('dry-run', 'refused', 'failed', 'sent',
                                                 'confirmed', 'not-confirmed')),
    detail      text
);

CREATE INDEX saga_operator_actions_order ON saga_operator_actions (order_id, id);
CREATE INDEX saga_operator_actions_at ON saga_operator_actions (at);

CREATE FUNCTION saga_operator_actions_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'saga_operator_actions is append-only (% refused)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER saga_operator_actions_append_only BEFORE UPDATE OR DELETE ON saga_operator_actions
    FOR EACH ROW EXECUTE FUNCTION saga_operator_actions_append_only();
CREATE TRIGGER saga_operator_actions_no_truncate BEFORE TRUNCATE ON saga_operator_actions
    FOR EACH STATEMENT EXECUTE FUNCTION saga_operator_actions_append_only();
