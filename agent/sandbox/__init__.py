"""Scratch network namespaces we create, use and always remove (tests, lab, bench)."""
