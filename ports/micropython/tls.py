"""TLS for a board's MQTT link (mqtts://): the socket wrapped as a TLS client, the
broker's certificate checked against the CA file the config names. Imported by
device_mqtt only when it connects over TLS, so a plain-TCP board never loads it."""
import ssl


def wrap_socket(sock, host, ca):
    """sock as a TLS client of host; ca: a CA certificate file (verified), or None."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if ca:
        with open(ca, 'rb') as f:
            ctx.load_verify_locations(cadata=f.read())
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx.wrap_socket(sock, server_hostname=host)
