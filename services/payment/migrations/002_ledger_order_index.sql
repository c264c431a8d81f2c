-- Look-ups of an order's ledger rows (payment_order_ledger, on every command) need an index
-- led by order_id: the two unique indexes on order_id are partial, so the planner cannot use
-- them for "WHERE order_id = $1", and fell back to scanning the whole (id, order_id) index,
-- a cost that grew with the ledger.
create index ledger_order_idx on ledger (order_id, id);
