"""OSCORE for the board runtime (ports.micropython.device), loaded only when the config
has an "oscore" section: the security context from its hex keys, with sender
sequence numbers reserved in blocks in a state file so a reboot never reuses one."""
from ...core.oscore import SecurityContext

SEQ_BLOCK = 256   # sequence numbers reserved per flash write
SEQ_LOW = 16      # reserve again when fewer are left


def context(dev):
    """The SecurityContext of dev.cfg['oscore'], its first block reserved."""
    o = dev.cfg['oscore']     # hex strings (config.check); config is not loaded after boot
    unhex = bytes.fromhex
    seq = dev.state_file('seq')
    ctx = SecurityContext(unhex(o['secret']), unhex(o['sender']), unhex(o['recipient']),
                          unhex(o.get('salt', '')),
                          id_context=unhex(o['context']) if o.get('context') else None,
                          persisted_seq=int(seq) if seq else 0)
    _reserve(dev, ctx)
    return ctx


def keep_seq(dev):
    """Reserve the next block when the current one runs low (every turn)."""
    ctx = dev.ctx
    if ctx.sender_seq_remaining() < SEQ_LOW:
        _reserve(dev, ctx)


def _reserve(dev, ctx):
    value = ctx.reserve_sender_seq(SEQ_BLOCK)
    dev.state_file('seq', str(value))
    ctx.confirm_sender_seq(value)
