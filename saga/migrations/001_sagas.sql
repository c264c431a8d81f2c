-- The order saga's own tables: one row per order (the state the machine works on), the
-- append-only log of every applied step, and at most one durable timer per saga.

CREATE TABLE sagas (
    order_id    uuid PRIMARY KEY,
    user_id     uuid NOT NULL,
    status      text NOT NULL CHECK (status IN ('PENDING', 'RESERVING', 'PAYING', 'CONFIRMING',
                                                'COMPLETED', 'COMPENSATING', 'CANCELLED',
                                                'NEEDS_OPERATOR')),
    reason      text CHECK (reason IN ('PET_UNAVAILABLE', 'INSUFFICIENT_FUNDS', 'CARD_INVALID',
                                       'CARD_UNKNOWN', 'CANCELLED_BY_USER', 'TIMEOUT')),
    -- Compensations still waiting for their acknowledgement (machine.h SAGA_PENDING_* bits).
    pending     int NOT NULL DEFAULT 0 CHECK (pending >= 0),
    -- Retries of the current waiting step (timeouts seen).
    attempts    int NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    -- 1 when created (PENDING), +1 per applied step; saga.order_status_changed carries it.
    version     int NOT NULL CHECK (version >= 1),
    pet_ids     uuid[] NOT NULL CHECK (cardinality(pet_ids) >= 1),
    total_cents bigint NOT NULL CHECK (total_cents >= 0),
    -- The card sealed for the payment service (only it can open it). Cleared once the saga has
    -- finished: nothing sends a charge after that.
    card_sealed text,
    card_last4  text NOT NULL CHECK (card_last4 ~ '^[0-9]{4}$'),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Operators look for parked sagas; the metrics gauge counts them every few hundred ms.
CREATE INDEX sagas_needs_operator ON sagas (updated_at) WHERE status = 'NEEDS_OPERATOR';

CREATE TABLE saga_steps (
    id          bigserial PRIMARY KEY,
    order_id    uuid NOT NULL REFERENCES sagas (order_id),
    version     int NOT NULL,           -- the saga's version after this step
    event       text NOT NULL,          -- machine.h event name, or 'created'
    from_status text,                   -- NULL for the creation
    to_status   text NOT NULL,
    message_id  uuid,                   -- the message that caused the step; NULL for a timer
    why         text NOT NULL,
    at          timestamptz NOT NULL DEFAULT now(),
    UNIQUE (order_id, version)
);

-- The step log is history: steps are appended, never changed.
CREATE FUNCTION saga_steps_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'saga_steps is append-only (% refused)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER saga_steps_append_only BEFORE UPDATE OR DELETE ON saga_steps
    FOR EACH ROW EXECUTE FUNCTION saga_steps_append_only();

-- One timer per saga, in database time; the timer worker claims due rows with SKIP LOCKED.
CREATE TABLE saga_timers (
    order_id    uuid PRIMARY KEY REFERENCES sagas (order_id) ON DELETE CASCADE,
    deadline    timestamptz NOT NULL,
    attempt     int NOT NULL DEFAULT 0  -- the saga's attempts when the timer was armed
);

CREATE INDEX saga_timers_deadline ON saga_timers (deadline);
