"""Compatibility tests against the stock WireGuard tools (wg, wg-quick, wireguard-go)."""
