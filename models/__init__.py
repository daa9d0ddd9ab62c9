"""Payloads that cross Temporal and HTTP (pydantic), and the database tables (models.tables)."""
