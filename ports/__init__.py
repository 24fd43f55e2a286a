"""Runtimes that move bytes and read clocks: micropython/ and cpython/."""
