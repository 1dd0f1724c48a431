"""Use cases of the reservations service: one function per desk action, one transaction each."""
