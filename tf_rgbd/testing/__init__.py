"""Helpers shared by the tests and the benchmarks (installed with the package, so an installed
benchmark never imports the unpackaged ``tests`` folder)."""
