-- Segmentation for any lab's microscope (issue 19). An uploaded field may carry its pixel size
-- (the lab knows it from its instrument); each analysed field keeps the scale the segmenter
-- used, where it came from, how sure it was, and the field-QC flags it raised.
ALTER TABLE specimen_images
    ADD COLUMN um_per_px real CHECK (um_per_px IS NULL OR um_per_px > 0);

ALTER TABLE analysis_fields
    ADD COLUMN um_per_px real,  -- NULL: unknown (no red-cell layer, or an algorithm without it)
    ADD COLUMN scale_source text,
    ADD COLUMN scale_confidence real,
    ADD COLUMN flags text[] NOT NULL DEFAULT '{}';
