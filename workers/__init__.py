"""Celery workers that run synthesis. Nothing here imports Reflex: GPU workers run without the web tier."""
