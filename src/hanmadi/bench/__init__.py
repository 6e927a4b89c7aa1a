"""hanmadi.bench."""
