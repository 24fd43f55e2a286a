"""A monotonic millisecond clock that never wraps (time.ticks_ms on a board,
time.monotonic on CPython): the one clock the socket loops and the runtime use."""
import time


def clock():
    """() -> monotonic integer milliseconds since the clock was made."""
    if not hasattr(time, 'ticks_ms'):
        return lambda: int(time.monotonic() * 1000)
    state = [time.ticks_ms(), 0]

    def now_ms():
        t = time.ticks_ms()
        state[1] += time.ticks_diff(t, state[0])
        state[0] = t
        return state[1]
    return now_ms
