"""Observability: Prometheus metrics (`metrics`, served by `metrics_http`) and the key log
for Wireshark (`keylog`). They read the engine through its public surface; the engine does
not import them (logging itself is the engine's `log`).
"""
