"""The device bench/footprint.py runs on the real MicroPython (compiled to .mpy).

    micropython -X heapsize=H -m mp_footprint_driver spot.json run|garbage [report_s [boot_s]]

Boots the board runtime from the config (the heat pump of examples/unix_heat_pump.py
with its plant model, or a meter with fixed readings), against the real bridge.
Prints "SPOT-FP key value" lines; heap figures are gc.mem_alloc() after gc.collect()
minus the same before SPOT was imported (asyncio and this driver are loaded by then).
  run      boot, then serve (asyncio), printing the retained heap once registered and
           boot_s later ("boot") and every report_s ("at <s>"), with the
           MemoryErrors caught; each taken when no exchange is open (the link idle),
           at most 2 s later
  garbage  boot, register, then count bytes allocated with the collector off, per
           idle turn and per notification (the turn that sends it and those that
           take its acknowledgement, less as many idle turns), over N of each
"""
import gc
import sys
import time

import asyncio
import micropython

N = 40
METER_OBJECTS = ('v_l1', 'v_l2', 'v_l3', 'i_l1', 'i_l2', 'i_l3', 'p_l1', 'p_l2', 'p_l3',
                 'p', 'power_factor', 'f', 'v', 'energy_import', 'energy_export')


def out(key, value):
    print('SPOT-FP', key, value)


def heap():
    gc.collect()
    return gc.mem_alloc()


class Reading:
    """A meter reading that changes when told (the meter's bound getter)."""
    value = 2300

    def __call__(self):
        return self.value


def boot(path):
    """(device, a () that changes a reported value) for the config at path; the
    bundle's preload first where there is one (.mpy files, ROMFS), as its main.py does."""
    try:
        __import__('spot_preload')
    except ImportError:
        pass
    import json
    with open(path) as f:
        profile = json.load(f)['profile']   # the device loads and checks the config itself
    if profile == 'heat_pump':
        import unix_heat_pump
        dev, plant = unix_heat_pump.main(path)

        def change():
            plant.outdoor_temp += 1
        return dev, change
    from spot.ports.micropython import device, hw
    from spot.profiles import meter
    dev = device.Device(path, meter)
    reading = Reading()
    for name in METER_OBJECTS:
        hw.bind(dev.node, name, get=reading, wire=True)

    def change():
        reading.value += 1
    return dev, change


def spare_given_back(dev):
    # the CoAP link's datagram receiver gives its spare block (401 B) back when a receive
    # finds no room (near the smallest heap) and takes it again at a later receive
    rx = getattr(dev.link, '_rx', None)
    return rx is not None and rx.buf is None and rx.mv is None   # a board's: no view


async def settled(dev):
    # the heap between two exchanges: a notification in flight (its exchange, datagram,
    # timer) is working memory, not retained growth; waits at most 2 s for that, and at
    # most a telemetry period more for a spare receive block given back to be taken
    # again (else a reading lacks its 432 B and the next one seems to grow by them)
    for _ in range(100):
        if dev.link.idle(dev.clock()):
            break
        await asyncio.sleep_ms(20)
    for _ in range(600):
        if not spare_given_back(dev):
            break
        await asyncio.sleep_ms(20)
    for _ in range(100):
        if dev.link.idle(dev.clock()):
            return
        await asyncio.sleep_ms(20)


async def report(dev, base, every, wait_s):
    while not dev.link.up():
        await asyncio.sleep_ms(20)
    # "after boot": registered, and wait_s later (a telemetry period: its first telemetry
    # sent, the tables a notification uses have their room), between exchanges
    await asyncio.sleep(wait_s)
    await settled(dev)
    out('boot', heap() - base)
    micropython.qstr_info()     # "qstr pool: n_pool=.., n_qstr=..": the names interned
    t0 = time.ticks_ms()
    while True:
        await asyncio.sleep(every)
        await settled(dev)
        out('at', '%d %d %d %d' % (time.ticks_diff(time.ticks_ms(), t0) // 1000, heap() - base,
                                    dev.mem_errors, dev.errors))
        micropython.qstr_info()


async def run(path, every, wait_s):
    base = heap()
    dev, _ = boot(path)
    asyncio.create_task(report(dev, base, every, wait_s))
    await dev.run()


def settle(dev, ms):
    end = time.ticks_add(time.ticks_ms(), ms)
    while time.ticks_diff(end, time.ticks_ms()) > 0:
        dev.poll()
        time.sleep_ms(5)


def idle_turns(dev, n):
    gc.collect()
    gc.disable()
    a = gc.mem_alloc()
    for _ in range(n):
        dev.poll()
    g = gc.mem_alloc() - a
    gc.enable()
    return g


async def garbage(path):
    base = heap()
    dev, change = boot(path)
    dev.start()
    while not dev.link.up():
        dev.poll()
        await asyncio.sleep_ms(20)
    out('boot', heap() - base)
    node = dev.node
    node.subs.subs.clear()      # telemetry only from here: every change is notified
    node.report(dev.sid, {11 if dev.sid == 0x10 else 1: {0: 0}}, dev.clock() // 1000, None)
    settle(dev, 500)
    idle = idle_turns(dev, N) / N
    polls = 0
    total = 0
    for _ in range(N):
        change()
        gc.collect()
        gc.disable()
        a = gc.mem_alloc()
        end = time.ticks_add(time.ticks_ms(), 200)
        while time.ticks_diff(end, time.ticks_ms()) > 0:   # its turn and its ACK's
            dev.poll()
            polls += 1
            time.sleep_ms(2)
        total += gc.mem_alloc() - a
        gc.enable()
    out('garbage_idle_turn', int(idle))
    out('garbage_notification', int(total / N - idle * (polls / N - 1)))
    out('turns_per_notification', polls // N)
    out('mem_errors', dev.mem_errors)


def main():
    path, mode = sys.argv[1], sys.argv[2]
    if mode == 'run':
        asyncio.run(run(path, int(sys.argv[3]) if len(sys.argv) > 3 else 10,
                        int(sys.argv[4]) if len(sys.argv) > 4 else 0))
    else:
        asyncio.run(garbage(path))


main()
