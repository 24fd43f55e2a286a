"""Counters and gauges, rendered in the Prometheus text exposition format."""


class Metrics:
    def __init__(self, prefix="spot_bridge_"):
        self.prefix = prefix
        self._counters = {}   # (name, labels tuple) -> value
        self._gauges = {}     # name -> callable returning a number
        self._help = {}

    def describe(self, name, text):
        self._help[name] = text

    def inc(self, name, amount=1, **labels):
        self.count(self.key(name, **labels), amount)

    @staticmethod
    def key(name, **labels):
        """A counter's key, made once for count() where a counter moves for every frame."""
        return (name, tuple(sorted(labels.items())))

    def count(self, key, amount=1):
        """inc() of the counter of a key()."""
        self._counters[key] = self._counters.get(key, 0) + amount

    def value(self, name, **labels):
        return self._counters.get((name, tuple(sorted(labels.items()))), 0)

    def gauge(self, name, fn, text=""):
        self._gauges[name] = fn
        if text:
            self._help[name] = text

    def render(self):
        lines = []
        names = sorted({k[0] for k in self._counters})
        for name in names:
            full = self.prefix + name + "_total"
            if name in self._help:
                lines.append("# HELP %s %s" % (full, self._help[name]))
            lines.append("# TYPE %s counter" % full)
            for (n, labels), v in sorted(self._counters.items()):
                if n == name:
                    lab = ",".join('%s="%s"' % (k, str(val).replace('"', "'")) for k, val in labels)
                    lines.append("%s%s %s" % (full, "{%s}" % lab if lab else "", v))
        for name, fn in sorted(self._gauges.items()):
            full = self.prefix + name
            if name in self._help:
                lines.append("# HELP %s %s" % (full, self._help[name]))
            lines.append("# TYPE %s gauge" % full)
            lines.append("%s %s" % (full, fn()))
        return "\n".join(lines) + "\n"
