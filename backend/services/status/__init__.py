"""Is LockN up: health, readiness for speech, which features are live, QA runs."""
