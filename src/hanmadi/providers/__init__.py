"""hanmadi.providers."""
