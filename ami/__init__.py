"""lowlat host tuning as code (see issue 4)."""
