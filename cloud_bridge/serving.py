"""The interpreter's settings for the `spot bridge` process (not for a bridge embedded
in another program, nor for the tests): set once the bridge has started.

- The cyclic garbage collector: what start-up made (modules, configuration, the
  fleet read from the store) is frozen out of its passes, and a young collection
  runs every YOUNG net allocations of containers instead of CPython's 700. The
  ingest makes some 30 short-lived tuples and lists per NOTIFY, freed by
  reference counting anyway; at 700 the collector ran every ~25 frames and took
  about a tenth of the event-loop thread's CPU (bench/coap_ingest_loop.py).
- The GIL's switch interval: SWITCH seconds instead of 5 ms. The SQLite thread
  takes the GIL back after each statement (SQLite itself runs without it); while
  the event loop decodes a burst of frames, each take waited up to the interval,
  so the store thread, the busier of the two, stood idle between statements.
"""
import gc
import sys

YOUNG = 10000
SWITCH = 0.0005


def tune_for_serving():
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG, older, oldest)
    sys.setswitchinterval(SWITCH)
