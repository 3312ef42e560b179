"""The example resource: a CRUD API over one table. Copy it for your own resources."""
