"""Small pieces every service shares: failures, the owner-scoped lookup, pagination, a buffer's flusher."""
