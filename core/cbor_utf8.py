"""The strict UTF-8 check (RFC 3629) core.cbor makes of a decoded non-ASCII text string
where the runtime's bytes.decode() checks only the shape of sequences (MicroPython lets
surrogates, overlong forms and code points past U+10FFFF through); imported with the
first such string, so a board that never receives one holds none of this code.
"""


def valid(b):
    """True if bytes b are well-formed UTF-8 (RFC 3629), checked byte by byte."""
    i = 0
    n = len(b)
    while i < n:
        c = b[i]
        if c < 0x80:
            i += 1
            continue
        lo = 0x80
        hi = 0xBF
        if 0xC2 <= c <= 0xDF:
            k = 1
        elif 0xE0 <= c <= 0xEF:
            k = 2
            if c == 0xE0:
                lo = 0xA0  # overlong
            elif c == 0xED:
                hi = 0x9F  # surrogates
        elif 0xF0 <= c <= 0xF4:
            k = 3
            if c == 0xF0:
                lo = 0x90  # overlong
            elif c == 0xF4:
                hi = 0x8F  # past U+10FFFF
        else:
            return False
        if i + k >= n or not lo <= b[i + 1] <= hi:
            return False
        for j in range(i + 2, i + k + 1):
            if b[j] & 0xC0 != 0x80:
                return False
        i += k + 1
    return True
