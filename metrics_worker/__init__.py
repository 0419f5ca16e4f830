"""Metrics: turns the event stream into the figures the office publishes."""
