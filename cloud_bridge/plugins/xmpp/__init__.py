"""XMPP for the SPOT bridge: the fleet on an XMPP server, IEC 61850-8-2 style
(IEC TR 61850-80-3 clause 7): MMS PDUs in ASN.1 XER inside iq / message
stanzas, presence per device, operators' JIDs mapped to roles.

    [plugins.xmpp]
    role = "aggregator"                  # the plugin's pairing role (controls need writes)
    jid = "spot-bridge@xmpp.example"
    password_env = "SPOT_XMPP_PASSWORD"  # or password = "..."
    server = "xmpp.example:5222"         # default: the JID's domain
    ca = "xmpp-ca.pem"                   # checks the server's certificate (STARTTLS)
    groups = ["feeder-12"]               # devices exposed (devices / groups; none: all)
    operators = { "dms@xmpp.example" = "operator", "scada@xmpp.example" = "monitor" }

Entry point: xmpp = "spot.cloud_bridge.plugins.xmpp:factory" in group
spot.bridge.plugins. See docs/xmpp.md.
"""
from .plugin import XmppPlugin, check_options, OPTIONS
from .mms_services import MmsServices

__all__ = ["factory", "XmppPlugin", "check_options", "OPTIONS"]


def factory(ctx):
    return XmppPlugin(ctx, MmsServices)
