"""Portable, I/O-free protocol core: CBOR, frames, object model, node."""
