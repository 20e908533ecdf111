"""The GPU side of sdfarm: Celery workers that load a pipeline once and render batches."""
