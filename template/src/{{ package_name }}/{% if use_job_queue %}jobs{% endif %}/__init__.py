"""Background jobs: ARQ workers on Redis, or tasks of the API process without Redis."""
