"""The sleepy cycle of the board runtime (ports.micropython.device), loaded only by a
device configured "sleepy" or waking from deep sleep: stay awake while the link
is busy, then deep sleep, keeping the node's clock in a state file across it."""

SLEEP_NO_LINK = 4   # awake periods without a link before giving up and sleeping


def check_awake(dev, now):
    """Set dev.state to 'sleep' once the link is idle and nothing happened for
    awake_s (or the link never came up in SLEEP_NO_LINK awake periods)."""
    awake = dev.cfg['awake_s'] * 1000
    link = dev.link
    if link.up():
        if dev._up_at is None:
            dev._up_at = dev._active = now
        if now - dev._active >= awake and link.idle(now):
            dev.state = 'sleep'
    elif now >= awake * SLEEP_NO_LINK:
        dev.state = 'sleep'


def deep_sleep(dev):
    """Close the link, keep the clock, sleep sleep_s (the board reboots into main.py)."""
    now = dev.clock()
    node = dev.node
    s = dev.cfg['sleep_s']
    dev.link.close(now)
    if node.time_known:
        dev.state_file('clock', str(int(node.unix(now // 1000)) + s))
    dev.state = 'slept'
    dev.board.deep_sleep(s * 1000)


def restore_clock(dev):
    """After a wake from deep sleep: the node's clock from what deep_sleep() kept."""
    text = dev.state_file('clock')
    if text:
        dev.set_time(int(text))
