"""The cloud bridge service: registry, store, command queue, API, plugins."""
