"""Transport implementations: smtp (aiosmtplib) and stub (in memory, for tests)."""
