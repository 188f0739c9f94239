"""Synthesis jobs: admission, enqueue, the worker's run, progress, live audio, recovery, batches."""
