"""Measurement read side: one customer's history (``omni customer``) and the HTML report.

The numbers themselves are computed in SQL (the dbt ``measurement`` schema); this package only
reads the warehouse, read-only, and presents what it finds. Tables that do not exist yet (a
warehouse built before dispatch or measurement ran) are reported as absent, never guessed.
"""
