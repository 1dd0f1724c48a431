"""Device emulators speaking the same bytes as the real devices, over a pty or TCP."""
