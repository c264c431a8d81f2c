-- Cards and the payment ledger.
--
-- A card is found by the keyed hash of its number (BLAKE2b keyed with CARD_HASH_KEY); the number
-- itself is never stored, only its last four digits. A balance changes only together with a
-- ledger row written in the same transaction. The money invariants live here, not only in code:
--   * one charge per order, ever, and a decline is final: at most one charge-or-decline row per
--     order (so a second charge command, even after a top-up, cannot charge);
--   * at most one refund-or-void row per order; a refund names the charge it returns;
--   * a balance never goes negative;
--   * ledger rows are immutable: UPDATE, DELETE and TRUNCATE are refused by triggers.

create table cards (
    id uuid primary key,
    card_hash bytea not null unique check (octet_length(card_hash) = 32),
    last4 text not null check (last4 ~ '^[0-9]{4}$'),
    balance_cents bigint not null check (balance_cents >= 0),
    version integer not null default 1 check (version >= 1),
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);

create table ledger (
    id bigserial primary key,
    order_id uuid not null,
    card_id uuid references cards (id),
    kind text not null check (kind in ('charge', 'decline', 'refund', 'void')),
    amount_cents bigint not null check (amount_cents >= 0),
    reason text check (reason in ('CARD_INVALID', 'CARD_UNKNOWN', 'INSUFFICIENT_FUNDS',
                                  'EXPIRED')),
    last4 text check (last4 ~ '^[0-9]{4}$'),
    refund_of bigint,
    message_id uuid,
    created_at timestamptz not null default now(),
    unique (id, order_id),
    constraint ledger_decline_has_reason check ((kind = 'decline') = (reason is not null)),
    constraint ledger_money_moves_on_a_card
        check (kind not in ('charge', 'refund') or card_id is not null),
    constraint ledger_refund_names_its_charge check ((kind = 'refund') = (refund_of is not null)),
    constraint ledger_refund_of_same_order
        foreign key (refund_of, order_id) references ledger (id, order_id)
);

create unique index ledger_one_charge_or_decline_per_order
    on ledger (order_id) where kind in ('charge', 'decline');
create unique index ledger_one_refund_or_void_per_order
    on ledger (order_id) where kind in ('refund', 'void');
create index ledger_card_idx on ledger (card_id) where card_id is not null;

create function ledger_refuse_change() returns trigger
language plpgsql as $$
begin
    raise exception 'ledger rows are immutable: % refused', tg_op
        using errcode = 'restrict_violation';
end
$$;

create trigger ledger_immutable_rows before update or delete on ledger
    for each row execute function ledger_refuse_change();
create trigger ledger_no_truncate before truncate on ledger
    for each statement execute function ledger_refuse_change();

-- Serialises everything payment does for one order and returns what the ledger holds for it.
-- Charge and refund-or-void for the same order may be handled at the same moment by two
-- consumers; without the lock both could see an empty ledger and commit a charge AND a void
-- (money taken, never returned). The lock is a transaction-level advisory lock keyed by the
-- order (class 1346459981 = 'PAYM'). The function is VOLATILE so, under READ COMMITTED, its
-- query takes a fresh snapshot AFTER the lock is granted and sees what the previous holder
-- committed.
create function payment_order_ledger(p_order_id uuid)
returns table (entry_id bigint, entry_kind text, entry_amount_cents bigint, entry_reason text,
               entry_card_id uuid, entry_last4 text)
language plpgsql volatile as $$
begin
    perform pg_advisory_xact_lock(1346459981, hashtext(p_order_id::text));
    return query
        select l.id, l.kind, l.amount_cents, l.reason, l.card_id, l.last4
        from ledger l
        where l.order_id = p_order_id
        order by l.id;
end
$$;
