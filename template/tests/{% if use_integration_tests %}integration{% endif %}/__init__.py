"""Integration tests: the service against real PostgreSQL and Redis."""
