"""Stand-ins shared by portable tests (CPython and MicroPython alike)."""


class Rand:
    """A deterministic source for CoAP message ids and tokens: 1001, 2002, ..."""

    def __init__(self):
        self.n = 0

    def __call__(self):
        self.n += 1001
        return self.n


def option_values(msg, number):
    """All values of option `number` of a CoapMessage, in message order."""
    return [value for num, value in msg.options if num == number]
