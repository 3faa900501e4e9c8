"""Benchmarks that measure the pipeline's pieces at realistic sizes (time, rows, memory).

`generation`: how long the world simulator takes and how much memory it needs per size.
"""
