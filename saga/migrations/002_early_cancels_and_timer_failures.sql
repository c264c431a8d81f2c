-- Cancellations that reached the saga before their order, and timers that cannot be handled.

-- An order.cancel_requested for an order the saga does not know yet (its order.placed is still
-- on its way): kept until that order.placed arrives, which then starts the saga cancelled and
-- deletes the row (handlers.c). A row whose order never comes stays, for an operator to see.
CREATE TABLE saga_early_cancels (
    order_id    uuid PRIMARY KEY,
    user_id     uuid NOT NULL,
    message_id  uuid NOT NULL,          -- the order.cancel_requested, for the step log
    received_at timestamptz NOT NULL DEFAULT now()
);

-- A timer whose timeout could not be handled is set aside on its own (timer.c): each failure
-- counts, postpones it with a backoff and keeps the error; after a bound it is parked
-- (parked_at) and no longer claimed, until an operator or the saga's next step re-arms it.
ALTER TABLE saga_timers
    ADD COLUMN failures   int NOT NULL DEFAULT 0 CHECK (failures >= 0),
    ADD COLUMN last_error text,
    ADD COLUMN parked_at  timestamptz;

-- The worker claims due timers that are not parked, oldest first.
DROP INDEX saga_timers_deadline;
CREATE INDEX saga_timers_due ON saga_timers (deadline) WHERE parked_at IS NULL;
CREATE INDEX saga_timers_parked ON saga_timers (parked_at) WHERE parked_at IS NOT NULL;
