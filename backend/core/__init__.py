"""The core every LockN process needs: settings, database, models, Redis, logging."""
