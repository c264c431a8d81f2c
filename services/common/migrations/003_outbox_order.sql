-- Outbox rows that cannot be published are parked, and ids of one order follow commit order.
-- See services/common/outbox.h (the row contract) and outbox/relay.c (the argument).

-- Set by the relay when a row failed RELAY_MAX_ATTEMPTS times (or can never be encoded); such a
-- row is never claimed again until an operator clears it (outbox/relay.h has the SQL).
ALTER TABLE outbox ADD COLUMN parked_at timestamptz;

-- What the relay claims: unsent, unparked rows per partition in id order.
DROP INDEX outbox_unsent;
CREATE INDEX outbox_unsent ON outbox (partition, id) WHERE sent_at IS NULL AND parked_at IS NULL;
-- Rows that failed at least once and are still unsent: the few that can hold back later rows of
-- their order (in backoff or parked). Empty while every publish succeeds.
CREATE INDEX outbox_failed ON outbox (partition, correlation_id, id)
    WHERE sent_at IS NULL AND attempts > 0;

-- Ids of one order in commit order: a transaction that writes a row with a correlation id
-- first takes a transaction-level advisory lock on it, then draws the row's id. A second
-- transaction writing the same order waits for the lock until the first has committed (or
-- rolled back: PostgreSQL makes a commit visible before it releases the locks), so it draws
-- larger ids and its rows become visible after the first's. Namespace 7303 is
-- OUTBOX_ORDER_LOCK_NAMESPACE in outbox.h. In the table, not in one writer's SQL, so that every
-- writer (services, tests, an operator's psql) keeps the promise.
CREATE FUNCTION outbox_order_lock() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.correlation_id IS NOT NULL AND NEW.correlation_id <> '' THEN
        PERFORM pg_advisory_xact_lock(7303, hashtext(NEW.correlation_id));
        NEW.id := nextval('outbox_id_seq');
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER outbox_order_lock BEFORE INSERT ON outbox
    FOR EACH ROW EXECUTE FUNCTION outbox_order_lock();

-- Every insert wakes the relays (LISTEN outbox) at its commit, whoever wrote it; PostgreSQL
-- folds the notifications of one transaction into one.
CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('outbox', '');
    RETURN NULL;
END
$$;
CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();
