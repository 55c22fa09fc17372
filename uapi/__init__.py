"""The WireGuard cross-platform UAPI text protocol (sans-IO) and a client.

This package never imports `wgpy`.
"""
