"""hanmadi.text."""
