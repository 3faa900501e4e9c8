"""Omnichannel retail marketing pipeline: the Python package behind the DAGs."""
