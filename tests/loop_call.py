"""Run a function on a socket loop's own thread from a test and wait for its result."""
import threading


def call_on(loop, fn, timeout=5):
    """fn(x) run by loop.call_soon (x: what the loop drives); its result."""
    done = threading.Event()
    box = []

    def run(x):
        try:
            box.append(fn(x))
        finally:
            done.set()
    loop.call_soon(run)
    assert done.wait(timeout), "loop did not run the call"
    return box[0] if box else None
