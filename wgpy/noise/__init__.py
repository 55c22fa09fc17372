"""The sans-IO protocol core: Noise_IKpsk2 handshake, keypairs, cookies, timers, peers.

Nothing here opens a socket, starts a thread or reads a clock: every entry point takes the
bytes it works on and `now` (seconds on a monotonic clock), and returns bytes, values or
actions for the device layer to carry out.
"""
