"""Activities: one class per outside system, its clients handed in by worker.py or a test."""
