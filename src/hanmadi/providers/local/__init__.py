"""hanmadi.providers.local."""
