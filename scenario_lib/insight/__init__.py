"""Insight into runs and traces: analysis of stored runs and the export of traces as training data."""
