-- Instrument profiles: a lab's microscopes and cameras, each with its pixel size, chosen per
-- specimen or per upload so the segmenter need not measure the scale on the red cells.
CREATE TABLE instrument_profiles (
    name text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
    um_per_px double precision NOT NULL CHECK (um_per_px > 0.01 AND um_per_px <= 5),
    description text NOT NULL DEFAULT '',
    updated_at timestamptz NOT NULL DEFAULT now(),
    updated_by text NOT NULL
);

ALTER TABLE specimens
    ADD COLUMN instrument_profile text REFERENCES instrument_profiles (name);

-- Where an image's um_per_px came from: "upload" or "instrument_profile:<name>".
ALTER TABLE specimen_images ADD COLUMN um_per_px_source text;
