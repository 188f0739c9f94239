"""API keys and what limits them: the key service, its cache and lineage, rate limits, quotas, usage."""
