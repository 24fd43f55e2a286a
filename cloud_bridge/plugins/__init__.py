"""Bridge plugins shipped with SPOT (each one an entry point in spot.bridge.plugins)."""
