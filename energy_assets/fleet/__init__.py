"""GPU fleet workers: the Celery executor on a Redis broker, one queue per hardware profile."""
