"""`spot iec61850 scl`: write the SCL (ICD) of the fleet the bridge knows, as
the plugin would serve it ([plugins.iec61850] of the bridge's TOML gives the
IED name, address, port and device selection)."""
import asyncio
import sys

from . import model as X
from .scl import write_scl


async def _devices(config):
    from ..store import open_store
    store = await open_store(config.store_url)
    try:
        return await store.list_devices()
    finally:
        await store.close()


def cmd_scl(args):
    from .. import config as C
    from ..plugin_api import member_filter
    from ..plugins.iec61850 import check_options, DEFAULT_PORT
    from ..store import StoreError
    try:
        config = C.load(args.config, data=args.data, store=args.store)
        options = dict(config.plugins.get("iec61850", {}) or {})
        options.pop("role", None)
        check_options(options)
        devices = asyncio.run(_devices(config))
        model = X.build_model(devices, args.ied_name or options.get("ied_name", "SPOT"),
                              member_filter(options))
    except (OSError, ValueError, StoreError) as e:
        print("spot iec61850 scl: %s" % e, file=sys.stderr)
        return 2
    data = write_scl(model, args.address or options.get("address", "127.0.0.1"),
                     args.port or options.get("port", DEFAULT_PORT))
    if args.out in (None, "-"):
        sys.stdout.buffer.write(data)
    else:
        with open(args.out, "wb") as f:
            f.write(data)
        print("%s: IED %s, %d logical devices" % (args.out, model.ied_name, len(model.lds)))
    return 0


def add_parser(sub):
    p = sub.add_parser("iec61850", help="IEC 61850 tools (the model the iec61850 plugin serves)")
    tools = p.add_subparsers(dest="tool", required=True)
    s = tools.add_parser("scl", help="write the fleet's SCL (ICD, IEC 61850-6)")
    s.add_argument("--out", help="file to write (default: standard output)")
    s.add_argument("--config", help="the bridge's TOML configuration file")
    s.add_argument("--data", help="the bridge's data directory (default spot-data)")
    s.add_argument("--store", metavar="URL", help="sqlite:///path or postgresql://...")
    s.add_argument("--ied-name", help="IED name (default: the plugin's, else SPOT)")
    s.add_argument("--address", help="server address in the SCL (default: the plugin's)")
    s.add_argument("--port", type=int, help="server port in the SCL (default: the plugin's)")
    s.set_defaults(func=cmd_scl)
