"""SPOT error codes, carried in ERROR frames as [code] or [code, detail].

The codes by name (errors.MALFORMED, ...) are core/errors_numbers', read through this
module; `NAMES` maps each code to its name, `name(code)` gives one.
"""
from .compat import MICROPYTHON

# each code's name, at its index (0: none): a constant tuple, in flash on a board
_NAMES = ("error", "unknown-service", "unknown-object", "read-only", "out-of-range",
          "wrong-type", "not-authorised", "too-large", "busy", "malformed", "unsupported")


def name(code):
    """The name of an error code ("error" for a code SPOT does not define)."""
    return _NAMES[code] if type(code) is int and 0 < code < len(_NAMES) else "error"


def _names():
    return {code: _NAMES[code] for code in range(1, len(_NAMES))}


if MICROPYTHON:
    def __getattr__(attr):
        # errors.MALFORMED, `from .errors import MALFORMED`: core/errors_numbers, imported
        # on first use (this module and the device-side ones use private copies and never
        # ask); errors.NAMES built on use
        if attr == "NAMES":
            return _names()
        from . import errors_numbers
        return getattr(errors_numbers, attr)
else:
    from .errors_numbers import *  # noqa: F401,F403  the codes as this module's attributes
    NAMES = _names()


class SpotError(Exception):
    """A request that must be answered with ERROR(code, detail) and change nothing."""

    def __init__(self, code, detail=None):
        super().__init__(name(code), detail)
        self.code = code
        self.detail = detail
