"""What `spot bridge` and `spot demo` say at start: where devices reach the
bridge (CoAP, coaps:// with DTLS, the MQTT broker) and where its data goes."""
import os
from urllib.parse import urlsplit


def without_password(url):
    """url with any password left out (user@host stays)."""
    u = urlsplit(url)
    if u.password is None:
        return url
    host = u.hostname + (":%d" % u.port if u.port else "")
    return u._replace(netloc="%s@%s" % (u.username, host)).geturl()


def banner_lines(config):
    """Lines after the first one: device listeners, then the data directory and store."""
    host, port = config.coap_addr
    lines = ["  devices: coap://%s:%d (UDP)" % (host, port)]
    if config.psk:
        lines.append("  devices: coaps://%s:%d (DTLS with pre-shared keys)" % (host, port + 1))
    if config.mqtt_url:
        lines.append("  devices: %s (MQTT broker)" % without_password(config.mqtt_url))
    lines.append("  data: %s (store %s)" % (os.path.abspath(config.data),
                                            without_password(config.store_url)))
    return lines
