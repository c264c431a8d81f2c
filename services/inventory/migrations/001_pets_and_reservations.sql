-- Pets and reservations: the inventory service's own tables.
--
-- A pet is available, reserved (held by exactly one order: order_id) or sold (order_id names the
-- buyer). version starts at 1 when the pet is listed and grows by one with every status change;
-- inventory.pet_status_changed carries it so readers can ignore stale events.
--
-- A reservation row is the memory of one order: at most one per order, ever. It is also the
-- order's lock: every command for an order first locks (or creates) its row, so the commands of
-- one order are serialised even with competing consumers, and a release that arrives before its
-- reserve leaves a 'released' tombstone that makes the late reserve fail.
--   reserved  the order holds pet_ids (every pet has status 'reserved' and order_id = order)
--   rejected  the reserve failed: nothing is held; unavailable_pet_ids says why
--   released  compensated (or released before any reserve arrived: a tombstone, pet_ids '{}')
--   sold      the sale was confirmed: the pets are sold to the order
-- Lock order, always: the reservation row, then pets in id order.

create table pets (
    id uuid primary key,
    name text not null check (length(name) between 1 and 100),
    species text not null check (length(species) between 1 and 50),
    price_cents bigint not null check (price_cents >= 0),
    status text not null default 'available'
        check (status in ('available', 'reserved', 'sold')),
    order_id uuid,
    version integer not null default 1 check (version >= 1),
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    constraint pets_held_by_an_order check ((status = 'available') = (order_id is null))
);

create index pets_order_idx on pets (order_id) where order_id is not null;

create table reservations (
    order_id uuid primary key,
    status text not null check (status in ('reserved', 'rejected', 'released', 'sold')),
    pet_ids uuid[] not null default '{}',
    unavailable_pet_ids uuid[] not null default '{}',
    total_cents bigint not null default 0 check (total_cents >= 0),
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);
