"""Board glue: network bring-up, watchdog, deep sleep and a clock.

Probes MicroPython's `network` and `machine`; where they are missing (CPython,
the WebAssembly build) every call is a harmless no-op, so the runtime above
runs anywhere. device.Device takes a board object: this module is the real
one, tests pass a fake with the same five functions.
"""
from .clock import clock  # noqa: F401  (board.clock() is part of the board interface)

try:
    import machine
except ImportError:
    machine = None
try:
    import network
except ImportError:
    network = None

_nic = [None]




def _lan(eth):
    # network.LAN(**eth) with pin numbers made Pins and the PHY named as in `network`
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
        if cfg.get('eth'):
            nic = _lan(cfg['eth'])
        else:
            nic = network.WLAN(network.STA_IF)
        _nic[0] = nic
    nic.active(True)
    if nic.isconnected():
        return True
    wifi = cfg.get('wifi')
    if wifi and not cfg.get('eth'):
        try:
            nic.connect(wifi[0], wifi[1])
        except OSError:   # already connecting
            pass
    waited = 0
    while waited < timeout_ms:
        if nic.isconnected():
            return True
        await sleep_ms(200)
        waited += 200
    return False


def link_ok():
    """False when the interface brought up by net_up() lost its link."""
    nic = _nic[0]
    return nic is None or nic.isconnected()


class _NoWatchdog:
    def feed(self):
        pass


def watchdog(timeout_ms):
    """A started hardware watchdog (machine.WDT) to feed(), or a no-op one."""
    if machine is None or not timeout_ms or not hasattr(machine, 'WDT'):
        return _NoWatchdog()
    try:
        return machine.WDT(timeout=timeout_ms)
    except ValueError:    # past the chip's longest (RP2040: 8.3 s)
        return machine.WDT(timeout=8000)


def woke_from_sleep():
    """True when this boot is a wake from deep sleep."""
    if machine is None or not hasattr(machine, 'reset_cause'):
        return False
    return machine.reset_cause() == getattr(machine, 'DEEPSLEEP_RESET', -1)


def deep_sleep(ms):
    """Deep sleep for ms (the board reboots into main.py); off a board: returns."""
    if machine is not None and hasattr(machine, 'deepsleep'):
        machine.deepsleep(ms)
