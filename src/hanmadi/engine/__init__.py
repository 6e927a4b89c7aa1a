"""hanmadi.engine."""
