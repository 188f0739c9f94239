"""Failures shared by several services."""


class ServiceUnavailable(RuntimeError):
    """A dependency (the broker, or every worker for an engine) is down: try again later (HTTP 503)."""
