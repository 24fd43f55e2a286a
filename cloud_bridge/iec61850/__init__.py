"""IEC 61850 for the bridge: the model of the fleet (model.py, from the
profile mapping in mapping.py and the classes in cdc.py), the ACSI
operations on it (acsi.py) and its SCL form (scl.py). The MMS server
plugin (cloud_bridge/plugins/iec61850) and the XMPP plugin serve it."""
