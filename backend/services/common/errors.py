"""Failures shared by several services."""


class ServiceUnavailable(RuntimeError):
    """A dependency (the broker, or every worker for an engine) is down: try again later (HTTP 503)."""

    #: How soon a retry may find it back (a broker restart, a worker coming up), told to clients.
    retry_after_s = 5
