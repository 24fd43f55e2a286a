"""Board glue: a clock, network bring-up, watchdog and deep sleep.

Probes MicroPython's `network` and `machine`; where they are missing (CPython,
the WebAssembly build) every call is a harmless no-op, so the runtime above
runs anywhere. device.Device takes a board object: this module is the real
one, tests pass a fake with the same five functions (net_up, link_ok,
watchdog, woke_from_sleep, deep_sleep); two more are used where a board has
them: unix_time() and reset().
"""
import time

from ...core.compat import const

try:
    import machine
except ImportError:
    machine = None
try:
    import network
except ImportError:
    network = None

_NET_TIMEOUT_MS = const(20000)   # net_up() gives up after this
_nic = None     # the interface net_up() brought up


def clock():
    """A () -> ms monotonic clock that never wraps (time.ticks_ms on a board,
    time.monotonic on CPython), counting from when it was made."""
    if not hasattr(time, 'ticks_ms'):
        return lambda: int(time.monotonic() * 1000)
    state = [time.ticks_ms(), 0]

    def now_ms():
        t = time.ticks_ms()
        state[1] += time.ticks_diff(t, state[0])
        state[0] = t
        return state[1]
    return now_ms


async def net_up(cfg, sleep_ms):
    """Bring the network up: Ethernet when the config has "eth" (network.LAN
    arguments), else Wi-Fi station with cfg["wifi"] = [ssid, key]. True once
    connected; False after 20 s. Off a board: True at once."""
    global _nic
    if network is None:
        return True
    eth = cfg.get('eth')
    nic = _nic
    if nic is None:
        if eth:     # network.LAN(**eth), pin numbers made Pins, the PHY named as in `network`
            kw = {}
            for k in eth:
                v = eth[k]
                if k in ('mdc', 'mdio', 'power', 'ref_clk') and type(v) is int:
                    v = machine.Pin(v)
                elif k == 'phy_type' and type(v) is str:
                    v = getattr(network, v)
                kw[k] = v
            nic = network.LAN(**kw)
        else:
            nic = network.WLAN(network.STA_IF)
        _nic = nic
    nic.active(True)
    wifi = cfg.get('wifi')
    if not nic.isconnected() and wifi and not eth:
        try:
            nic.connect(wifi[0], wifi[1])
        except OSError:   # already connecting
            pass
    waited = 0
    while not nic.isconnected():
        if waited >= _NET_TIMEOUT_MS:
            return False
        await sleep_ms(200)
        waited += 200
    return True


def link_ok():
    """False when the interface brought up by net_up() lost its link."""
    return _nic is None or _nic.isconnected()


def watchdog(ms):
    """A started hardware watchdog (machine.WDT) of ms to feed(); None without one."""
    if not ms or not hasattr(machine, 'WDT'):
        return None
    try:
        return machine.WDT(timeout=ms)
    except ValueError:    # past the chip's longest (RP2040: 8.3 s)
        return machine.WDT(timeout=8000)


def woke_from_sleep():
    """True when this boot is a wake from deep sleep."""
    return (hasattr(machine, 'reset_cause')
            and machine.reset_cause() == getattr(machine, 'DEEPSLEEP_RESET', -1))


_RESET_EXIT = const(75)  # exit status of reset() off a board (EX_TEMPFAIL: restart it)
_Y2K = const(946684800)  # Unix seconds at 2000-01-01, the epoch of some ports' time.time()


def reset():
    """Reset the board (machine.reset); off a board (the unix port, CPython): exit
    the process with status 75 (EX_TEMPFAIL), for the supervisor to start it again."""
    if hasattr(machine, 'reset'):
        machine.reset()
    import sys
    sys.exit(_RESET_EXIT)


def unix_time():
    """Unix seconds from the board's clock once it was set (ntptime, the host's
    clock on the unix port); None while it shows a time before 2020."""
    t = int(time.time())
    if time.gmtime(0)[0] == 2000:
        t += _Y2K
    return t if t > 1577836800 else None


def watchdog_reset():
    """True when this boot followed a watchdog reset."""
    return (hasattr(machine, 'reset_cause')
            and machine.reset_cause() == getattr(machine, 'WDT_RESET', -1))


def deep_sleep(ms):
    """Deep sleep for ms (the board reboots into main.py); off a board: returns."""
    if hasattr(machine, 'deepsleep'):
        machine.deepsleep(ms)
