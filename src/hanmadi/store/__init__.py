"""hanmadi.store."""
