"""`netpol-agent bench`: speed and size measured against the kernel's own cost.

cluster (synthetic cluster generator), compiling, coldstart, incremental (with
events, tap, labapi), datapath (with loadgen), memory; runner gathers a
results.Report. See docs/performance.md, section Benchmarks.
"""
