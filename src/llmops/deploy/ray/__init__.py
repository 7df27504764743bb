"""The Ray Serve deploy target (``--target ray``, the ``ray`` extra): each model version of a track is
a Serve application running the llmops replica app, autoscaled by Serve, fronted by the gateway.

Nothing here imports Ray at import time; ``cluster.import_ray`` names the extra when it is missing.
"""
