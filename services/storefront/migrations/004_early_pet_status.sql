-- With several storefront instances consuming storefront.events, a pet's status change can be
-- applied before its listing. Such a row holds only the status and version; the listing fills in
-- the rest. Until then the pet is neither shown nor sold (every read filters on name).
ALTER TABLE pets
    ALTER COLUMN name DROP NOT NULL,
    ALTER COLUMN species DROP NOT NULL,
    ALTER COLUMN price_cents DROP NOT NULL;
ALTER TABLE pets
    ADD CONSTRAINT pets_listed_whole CHECK ((name IS NULL) = (species IS NULL)
                                            AND (name IS NULL) = (price_cents IS NULL));
