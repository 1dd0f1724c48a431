"""The patrons application layer: one function per use case, each run in one transaction."""
