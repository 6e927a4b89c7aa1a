"""hanmadi.telephony."""
