-- One path for order status changes: the storefront.events consumer applies a change to the read
-- model, and its commit notifies every storefront instance (LISTEN storefront, services/
-- storefront/notices.c), which wakes its long polls and event streams. A deleted (or changed)
-- session is forgotten by every instance's session cache the same way. In the tables, not in one writer's
-- SQL, so that every writer (the consumer, an operator's psql) keeps the promise.
-- Payloads: "order <id> <status>" and "session <token_hash in hex>". PostgreSQL sends them at
-- commit, in commit order, and folds identical ones of one transaction.
CREATE FUNCTION storefront_notify_order() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('storefront', 'order ' || NEW.id::text || ' ' || NEW.status);
    RETURN NULL;
END
$$;
CREATE TRIGGER orders_notify AFTER UPDATE ON orders
    FOR EACH ROW WHEN (OLD.version IS DISTINCT FROM NEW.version)
    EXECUTE FUNCTION storefront_notify_order();

CREATE FUNCTION storefront_notify_session() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('storefront', 'session ' || encode(OLD.token_hash, 'hex'));
    RETURN NULL;
END
$$;
CREATE TRIGGER sessions_notify AFTER DELETE OR UPDATE ON sessions
    FOR EACH ROW EXECUTE FUNCTION storefront_notify_session();
