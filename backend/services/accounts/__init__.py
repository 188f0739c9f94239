"""Who did what: sign-in sessions, the audit trail and the request log."""
