"""The sandbox: a seeded simulated retail world and local servers that speak its APIs.

`world` generates and advances the world's tables (parquet); `services` (the HTTP servers)
serve them in the shapes of the real shop, POS and social APIs.
"""
