"""Batch work over many originals: warm-up, the SQS consumer fleet, and their progress."""
