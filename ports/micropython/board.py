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

_nic = [None]


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


def _nic_for(cfg):
    # network.LAN(**eth) with pin numbers made Pins and the PHY named as in `network`,
    # else the Wi-Fi station
    eth = cfg.get('eth')
    if not eth:
        return network.WLAN(network.STA_IF)
    kw = {}
    for k in eth:
        v = eth[k]
        if k in ('mdc', 'mdio', 'power', 'ref_clk') and type(v) is int:
            v = machine.Pin(v)
        elif k == 'phy_type' and type(v) is str:
            v = getattr(network, v)
        kw[k] = v
    return network.LAN(**kw)


async def net_up(cfg, sleep_ms, timeout_ms=20000):
    """Bring the network up: Ethernet when the config has "eth" (network.LAN
    arguments), else Wi-Fi station with cfg["wifi"] = [ssid, key]. True once
    connected; False after timeout_ms. Off a board: True at once."""
    if network is None:
        return True
    nic = _nic[0]
    if nic is None:
        nic = _nic[0] = _nic_for(cfg)
    nic.active(True)
    wifi = cfg.get('wifi')
    if not nic.isconnected() and wifi and not cfg.get('eth'):
        try:
            nic.connect(wifi[0], wifi[1])
        except OSError:   # already connecting
            pass
    waited = 0
    while not nic.isconnected():
        if waited >= timeout_ms:
            return False
        await sleep_ms(200)
        waited += 200
    return True


def link_ok():
    """False when the interface brought up by net_up() lost its link."""
    nic = _nic[0]
    return nic is None or nic.isconnected()


class _NoWatchdog:
    def feed(self):
        pass


def watchdog(timeout_ms):
    """A started hardware watchdog (machine.WDT) to feed(), or a no-op one."""
    if not timeout_ms or not hasattr(machine, 'WDT'):
        return _NoWatchdog()
    try:
        return machine.WDT(timeout=timeout_ms)
    except ValueError:    # past the chip's longest (RP2040: 8.3 s)
        return machine.WDT(timeout=8000)


def woke_from_sleep():
    """True when this boot is a wake from deep sleep."""
    return (hasattr(machine, 'reset_cause')
            and machine.reset_cause() == getattr(machine, 'DEEPSLEEP_RESET', -1))


RESET_EXIT = 75   # exit status of reset() off a board (EX_TEMPFAIL: a supervisor restarts it)
_Y2K = const(946684800)  # Unix seconds at 2000-01-01, the epoch of some ports' time.time()


def reset():
    """Reset the board (machine.reset); off a board (the unix port, CPython): exit
    the process with RESET_EXIT, for the supervisor to start it again."""
    if hasattr(machine, 'reset'):
        machine.reset()
    import sys
    sys.exit(RESET_EXIT)


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
