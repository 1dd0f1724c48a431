"""The patrons domain: pure rules and state machines (no gRPC, no SQL)."""
