"""CBOR diagnostic notation (RFC 8949 section 8) for the types SPOT uses.

format() renders a decoded value; parse() reads the notation back (ints,
floats, true/false/null, "text", h'hex', [arrays], {maps}, /comments/).
Used by `spot decode`, by docs/spec.md's examples and their tests. Not
needed on devices.
"""
from .cbor import CBORError


def format(value, note=None):
    """Diagnostic notation of value; note(path, value) may return a comment."""
    out = []
    _fmt(out, value, note, ())
    return "".join(out)


def _float(v):
    if v != v:
        return "NaN"
    if v in (float("inf"), float("-inf")):
        return "Infinity" if v > 0 else "-Infinity"
    r = repr(v)
    if "e" in r and "." not in r.split("e")[0]:
        a, b = r.split("e")
        r = a + ".0e" + b
    return r


def _str(v):
    return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _fmt(out, v, note, path):
    t = type(v)
    if v is None:
        out.append("null")
    elif t is bool:
        out.append("true" if v else "false")
    elif t is int:
        out.append(str(v))
    elif t is float:
        out.append(_float(v))
    elif t is str:
        out.append(_str(v))
    elif t is bytes:
        out.append("h'" + v.hex() + "'")
    elif t is list or t is tuple:
        out.append("[")
        for i, x in enumerate(v):
            if i:
                out.append(", ")
            _fmt(out, x, note, path + (i,))
        out.append("]")
    elif t is dict:
        out.append("{")
        keys = sorted(v, key=_key_order)
        for i, k in enumerate(keys):
            if i:
                out.append(", ")
            _fmt(out, k, None, ())
            c = note(path + (k,), v[k]) if note is not None else None
            if c:
                out.append(" /" + c + "/")
            out.append(": ")
            _fmt(out, v[k], note, path + (k,))
        out.append("}")
    else:
        raise CBORError("cannot format " + t.__name__)


def _key_order(k):
    from .cbor import dumps
    b = dumps(k)
    return (len(b), b)


# ---------------------------------------------------------------- parsing


class _Parser:
    def __init__(self, text):
        self.s = text
        self.i = 0

    def error(self, msg):
        return CBORError("diagnostic notation: %s at %d" % (msg, self.i))

    def ws(self):
        s = self.s
        while self.i < len(s):
            c = s[self.i]
            if c in " \t\r\n,":
                if c == ",":
                    return
                self.i += 1
            elif c == "/":
                j = s.find("/", self.i + 1)
                if j < 0:
                    raise self.error("unterminated comment")
                self.i = j + 1
            else:
                return

    def expect(self, c):
        self.ws()
        if not self.s.startswith(c, self.i):
            raise self.error("expected %r" % c)
        self.i += len(c)

    def value(self):
        self.ws()
        s = self.s
        if self.i >= len(s):
            raise self.error("unexpected end")
        c = s[self.i]
        if c == "[":
            self.i += 1
            return self.items("]", False)
        if c == "{":
            self.i += 1
            return self.items("}", True)
        if c == '"':
            return self.text()
        if s.startswith("h'", self.i):
            j = s.find("'", self.i + 2)
            if j < 0:
                raise self.error("unterminated byte string")
            raw = s[self.i + 2:j].replace(" ", "")
            self.i = j + 1
            return bytes.fromhex(raw)
        for word, val in (("true", True), ("false", False), ("null", None),
                          ("NaN", float("nan")), ("Infinity", float("inf")),
                          ("-Infinity", float("-inf"))):
            if s.startswith(word, self.i):
                self.i += len(word)
                return val
        j = self.i
        while j < len(s) and s[j] in "+-0123456789.eE":
            j += 1
        tok = s[self.i:j]
        if not tok:
            raise self.error("unexpected %r" % c)
        self.i = j
        if "." in tok or "e" in tok or "E" in tok:
            return float(tok)
        return int(tok)

    def text(self):
        s = self.s
        out = []
        i = self.i + 1
        while i < len(s) and s[i] != '"':
            if s[i] == "\\":
                i += 1
            out.append(s[i])
            i += 1
        if i >= len(s):
            raise self.error("unterminated string")
        self.i = i + 1
        return "".join(out)

    def items(self, close, is_map):
        out = {} if is_map else []
        first = True
        while True:
            self.ws()
            if self.s.startswith(close, self.i):
                self.i += 1
                return out
            if not first:
                self.expect(",")
            first = False
            v = self.value()
            if is_map:
                self.expect(":")
                out[v] = self.value()
            else:
                out.append(v)


def parse(text):
    """The value written in diagnostic notation."""
    p = _Parser(text)
    v = p.value()
    p.ws()
    if p.i != len(p.s):
        raise p.error("trailing text")
    return v
