"""MicroPython board runtime: socket loops over the portable core."""
