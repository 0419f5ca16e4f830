"""Alembic migrations for every schema (intake, cases, metrics, auth)."""
