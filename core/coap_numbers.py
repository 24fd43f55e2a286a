"""CoAP's numbers by name (RFC 7252, 7641, 7959, 8613, 9175): message types, codes
(class << 5 | detail), option numbers and Content-Formats, for code that names them (the
bridge, tests, firmware): `coap.GET` and `from spot.core.coap import GET` read them here;
and the client's event kinds (`coap_client.EV_RESPONSE`).

core/coap.py and the device-side modules use private copies (`_GET = const(1)`, checked
by tests/test_mp_private_constants.py), folded into their code by mpy-cross, so a board
imports this module only when something asks core.coap for a number by name.
"""
from .compat import const

# Message types
CON = const(0)
NON = const(1)
ACK = const(2)
RST = const(3)

# Codes: class << 5 | detail.  0.00 is the Empty message, 0.xx requests.
EMPTY = const(0)
GET = const(1)
POST = const(2)
PUT = const(3)
DELETE = const(4)
FETCH = const(5)
CHANGED = const(68)                     # 2.04
CONTENT = const(69)                     # 2.05
CONTINUE = const(95)                    # 2.31
BAD_REQUEST = const(128)                # 4.00
UNAUTHORIZED = const(129)               # 4.01
BAD_OPTION = const(130)                 # 4.02
NOT_FOUND = const(132)                  # 4.04
METHOD_NOT_ALLOWED = const(133)         # 4.05
NOT_ACCEPTABLE = const(134)             # 4.06
REQUEST_ENTITY_INCOMPLETE = const(136)  # 4.08
REQUEST_ENTITY_TOO_LARGE = const(141)   # 4.13
UNSUPPORTED_CONTENT_FORMAT = const(143)  # 4.15
INTERNAL_SERVER_ERROR = const(160)      # 5.00
SERVICE_UNAVAILABLE = const(163)        # 5.03
PROXYING_NOT_SUPPORTED = const(165)     # 5.05

# Option numbers (odd = critical)
ETAG = const(4)
OBSERVE = const(6)
OSCORE = const(9)
URI_PATH = const(11)
CONTENT_FORMAT = const(12)
MAX_AGE = const(14)
URI_QUERY = const(15)
ACCEPT = const(17)
BLOCK2 = const(23)
BLOCK1 = const(27)
SIZE2 = const(28)
PROXY_URI = const(35)
PROXY_SCHEME = const(39)
SIZE1 = const(60)
ECHO = const(252)

# Content-Formats
CF_TEXT = const(0)
CF_LINK_FORMAT = const(40)
CF_JSON = const(50)
CF_CBOR = const(60)

# Event kinds of core/coap_client (Event.kind), read as coap_client.EV_RESPONSE, ...
EV_RESPONSE = const(1)      # final response (or first response of an observation)
EV_NOTIFICATION = const(2)  # later notification of an observation
EV_TIMEOUT = const(3)       # no answer: retransmissions exhausted or response wait over
EV_RESET = const(4)         # the peer rejected the request with a Reset
EV_ERROR = const(5)         # block-wise failure (client) or handler exception (server)
