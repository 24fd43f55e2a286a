"""What `spot bridge` and `spot demo` say at start: every address the bridge
listens on or connects to (cloud_bridge.app.listening_lines) and where its
data goes."""
import os
from urllib.parse import urlsplit


def without_password(url):
    """url with any password left out (user@host stays)."""
    u = urlsplit(url)
    if u.password is None:
        return url
    host = u.hostname + (":%d" % u.port if u.port else "")
    return u._replace(netloc="%s@%s" % (u.username, host)).geturl()


def banner_lines(config, listening):
    """Lines after the first one: one per listening address, then the data directory."""
    lines = ["listening: " + line for line in listening]
    lines.append("data: %s (store %s)" % (os.path.abspath(config.data),
                                          without_password(config.store_url)))
    return lines
