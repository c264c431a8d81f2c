-- The version of the status change that gave the order its outcome: its first COMPLETED,
-- CANCELLED or NEEDS_OPERATOR. Set once, by the statement that applies that change
-- (order_view.c), so that the order is counted once in petstore_orders_finished_total and
-- petstore_order_completion_seconds (finished.c) even when a parked order is finished later.
ALTER TABLE orders ADD COLUMN finished_version int;

-- Orders parked now had their outcome already; COMPLETED and CANCELLED orders never change
-- again and need no value.
UPDATE orders SET finished_version = version WHERE status = 'NEEDS_OPERATOR';
