"""Inlet\x27s web tier: the two ingest endpoints, credentials, operations and the CLI."""
