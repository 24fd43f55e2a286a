"""An XMPP operator client in its own process, for the XMPP plugin tests.

    python3 tests/xmpp_operator.py JID PASSWORD HOST PORT CA

A slixmpp client (STARTTLS checked against CA, SASL). It carries out the
commands it reads from stdin, one JSON object a line:

    {"op": "send", "xml": "<iq .../>"}     send a stanza as written
    {"op": "subscribe", "to": JID}         ask for JID's presence
    {"op": "presence"}                     announce its own presence
    {"op": "quit"}

and writes what happens to stdout, one JSON object a line: {"ev": "ready"}
once the session is up, {"ev": "auth_failed"}, {"ev": "disconnected"}, and
{"ev": "stanza", "kind": "iq" | "message" | "presence", "xml": ...} for every
stanza it receives. The stanzas' payloads are built and checked by the test
(tests/xmpp/mms_subset.xsd, lxml), not here: this process is only the
operator's XMPP connection, separate from the bridge's.
"""
import asyncio
import json
import logging
import sys

import slixmpp
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath


def emit(**event):
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


class Operator(slixmpp.ClientXMPP):
    def __init__(self, jid, password, ca):
        super().__init__(jid, password)
        self.ca_certs = ca
        self.enable_plaintext = False
        self.enable_direct_tls = False
        self.add_event_handler("session_start", self.started)
        self.add_event_handler("failed_all_auth", lambda e: emit(ev="auth_failed"))
        self.add_event_handler("disconnected", lambda e: emit(ev="disconnected"))
        for kind in ("iq", "message", "presence"):
            self.register_handler(Callback(
                "operator-" + kind, MatchXPath("{jabber:client}%s" % kind),
                lambda st, kind=kind: emit(ev="stanza", kind=kind, xml=str(st))))

    def started(self, _event):
        emit(ev="ready", jid=self.boundjid.full)


async def commands(client):
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = await reader.readline()
        if not line:
            break
        cmd = json.loads(line)
        if cmd["op"] == "send":
            client.send_raw(cmd["xml"])
        elif cmd["op"] == "subscribe":
            client.send_presence(pto=cmd["to"], ptype="subscribe")
        elif cmd["op"] == "presence":
            client.send_presence()
        elif cmd["op"] == "quit":
            break
    client.disconnect(wait=1.0)
    await asyncio.sleep(0.2)


def main():
    jid, password, host, port, ca = sys.argv[1:6]
    logging.basicConfig(level=logging.CRITICAL)
    client = Operator(jid, password, ca)
    client.connect(host, int(port))
    asyncio.get_event_loop().run_until_complete(commands(client))


if __name__ == "__main__":
    main()
