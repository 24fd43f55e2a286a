"""Assertion helpers for the portable tests (no pytest on MicroPython)."""


def raises(exc_type, fn, *args):
    """Call fn(*args); return the exc_type it raised, fail if it raised nothing."""
    try:
        fn(*args)
    except exc_type as e:
        return e
    raise AssertionError("no exception raised")
