"""Benchmarks that measure the pipeline's pieces at realistic sizes (time, rows, memory).

`generation`: the world simulator per size. `pipeline`: ingest, quality gate and dbt build on
a large world, backfill then one daily run. `measure`: the child-process measurement both use.
"""
