"""LockN's backend: settings, database, services and the HTTP API. Knows nothing of Reflex pages."""
