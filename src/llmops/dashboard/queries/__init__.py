"""Read models of the dashboard: aggregates over the store that no domain package offers yet.

Reads block; pages run them in worker threads. Everything a page changes goes through the domain
packages (keys, lifecycle signals), never through these modules.
"""
