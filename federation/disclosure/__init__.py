"""Per-biobank, per-role disclosure: granularity, thresholds, rounding, fixed noise."""
