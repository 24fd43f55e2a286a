"""The cyclic garbage collector held off while a batch's rows are built.

    with gc_paused():
        out = encode_telemetry(rows)     # tens of thousands of new tuples and lists

Building a telemetry batch allocates a container per row; each few hundred
allocations start a collection, and every collection of the older generations
walks all the batch's objects made so far: for a 10 000-device batch that doubled
the store's Python time (docs/benchmarks.md, schema 5). Reference counting still
frees everything at once; only cycles wait until the collector is back. Nested
and concurrent uses (the store's worker threads) share one count: the collector
comes back, if it was on, when the last one ends.
"""
import gc
import threading
from contextlib import contextmanager

_lock = threading.Lock()
_users = 0
_was_enabled = False


@contextmanager
def gc_paused():
    """Hold the cyclic collector off inside the block (see the module's docstring)."""
    global _users, _was_enabled
    with _lock:
        if _users == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _users += 1
    try:
        yield
    finally:
        with _lock:
            _users -= 1
            if _users == 0 and _was_enabled:
                gc.enable()
