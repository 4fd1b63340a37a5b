"""Batch entry points that run on Ray: training (`jobs.train`) and evaluation (`jobs.evaluate`)."""
