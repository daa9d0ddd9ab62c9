"""Workflows: one durable workflow per order."""
