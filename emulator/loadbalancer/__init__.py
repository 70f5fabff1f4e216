"""Load-balancing endpoints (RunPod's endpoint type ``LB``): HTTP straight to each worker's own server.

``rules`` (pure decisions), ``pool`` (which workers take requests), ``health`` (the health poller),
``proxy`` and ``websocket`` (the reverse proxy on the client listener), ``service`` (the wiring).
"""
