"""The job queue shared by web and workers: the Celery app factory, queue names and routing, worker presence."""
