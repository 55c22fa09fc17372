"""The UAPI server: the socket `/var/run/wireguard/IFNAME.sock` that `wg` talks to
(`server`), fair sharing of the device lock between its clients (`sharing`), and the watch
that stops the daemon when its socket file is deleted (`inotify`). The text protocol itself
is the top-level `uapi` package; applying a `set` is the engine's `config`.
"""
