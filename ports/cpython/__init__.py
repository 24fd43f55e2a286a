"""CPython runtime: asyncio transports and device simulators."""
