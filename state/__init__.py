"""Reflex states, one module per concern. They call `backend/services`, never the app's own HTTP API."""
