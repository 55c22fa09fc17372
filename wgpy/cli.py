"""The wireguard-go-compatible command line and daemonization.

    wgpy [-f|--foreground] IFNAME      wgpy --version      wgpy --help

Startup order is wireguard-go's, because wg-quick runs `wg setconf` the moment we exit:
create the TUN (or adopt WG_TUN_FD), open the UAPI socket (or adopt WG_UAPI_FD), and
only then, unless in the foreground (-f or WG_PROCESS_FOREGROUND=1), re-execute ourselves
with both fds inherited and exit 0 once the copy says (through the WGPY_READY_FD pipe)
that it serves them: Python takes half a second to start, and a `wg setconf`, a signal or
an `ip link delete` in that window must find a running daemon. The background copy builds
the device and runs until SIGTERM or SIGINT, the deletion of its TUN, or the deletion of
its socket file; it then unlinks the socket and exits 0. Setup failures exit 1 with one clear line.

wireguard-go's other habits, kept: log lines on standard output, the first of them (at
LOG_LEVEL=verbose) `Starting wgpy version X`; an empty WG_TUN_FD, WG_UAPI_FD or LOG_LEVEL
counts as unset; the interface name is the kernel's (so `wgpy 'wg%d'` serves `wg0` and its
socket is `wg0.sock`); an adopted TUN gets the default MTU. The daemon's process title is
`wgpy IFNAME` (its name, as `ps -C`, `pgrep -x` and `top` see it, is `wgpy`). A crash, a
thread of the device dying of an exception, exits 2, as a Go panic exits wireguard-go.

WGPY_KEYLOG_FILE names Wireshark's WireGuard key log (wgpy/observe/keylog.py), opened before
anything is created, so that a file we may not write is a setup failure, not a silent loss.
"""

from __future__ import annotations

import faulthandler
import os
import select
import signal
import socket
import subprocess
import sys

from wgpy import __version__
from wgpy.constants import MAX_CRYPTO_WORKERS
from wgpy.device import threads
from wgpy.device.device import Device
from wgpy.device.log import SILENT, Logger, configure_daemon, level_from_env
from wgpy.device.tun import Tun, TunError
from wgpy.ipc.listener import SocketInUse, listen
from wgpy.ipc.server import UapiServer
from wgpy.link.netlink import start_watching
from wgpy.observe.keylog import KeyLog, KeyLogError
from wgpy.observe.metrics import MetricsError, bind

USAGE = "Usage: wgpy [-f/--foreground] INTERFACE-NAME\n       wgpy --version\n"
EXIT_SETUP_FAILED = 1
EXIT_CRASHED = 2  # a Go panic's exit status, which is what wireguard-go gives on a crash
ENV_TUN_FD, ENV_UAPI_FD, ENV_FOREGROUND = "WG_TUN_FD", "WG_UAPI_FD", "WG_PROCESS_FOREGROUND"
ENV_READY_FD = "WGPY_READY_FD"
ENV_KEYLOG = "WGPY_KEYLOG_FILE"  # Wireshark's key log, appended to (wgpy/observe/keylog.py)
ENV_METRICS, ENV_METRICS_FD = "WGPY_METRICS_ADDRESS", "WGPY_METRICS_FD"
READY_TIMEOUT = 10.0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args in (["--version"], ["-v"]):
        print(f"wgpy v{__version__}\n\nUserspace WireGuard in Python, a drop-in for "
              "wireguard-go.")
        return 0
    if len(args) >= 2 and args[0] == "proxy":  # `wgpy proxy` alone is an interface name
        from wgpy.api.proxy import main as proxy_main  # noqa: PLC0415 - not for the daemon
        return proxy_main(args[1:])
    foreground = os.environ.get(ENV_FOREGROUND) == "1"
    if len(args) == 2 and args[0] in ("-f", "--foreground"):
        foreground, args = True, args[1:]
    if len(args) != 1 or args[0].startswith("-"):
        sys.stdout.write(USAGE)
        return 0  # wireguard-go prints the usage and exits 0
    name = args[0]
    _raise_nofile_limit()
    level = level_from_env(os.environ.get("LOG_LEVEL"))
    configure_daemon(level)  # records of the `wgpy` loggers -> wireguard-go's lines, stdout
    try:
        switch = _switch_interval()
        workers = _crypto_workers()
    except ValueError as exc:
        Logger(name, level).daemon.error("%s", exc)
        return EXIT_SETUP_FAILED
    try:
        metrics = _metrics_listener()
    except (MetricsError, OSError, ValueError) as exc:
        sys.stderr.write(f"wgpy: {exc}\n")
        return EXIT_SETUP_FAILED
    try:  # before anything is created: a key log we cannot write is a setup failure
        keylog_path = os.environ.get(ENV_KEYLOG, "").strip()
        keylog = KeyLog.open(keylog_path, Logger(name, level).daemon) if keylog_path else None
    except KeyLogError as exc:
        Logger(name, level).daemon.error("%s", exc)
        return EXIT_SETUP_FAILED

    try:
        tun_fd = _fd_from_env(ENV_TUN_FD)
        tun = Tun.create(name) if tun_fd is None else Tun.adopt(tun_fd)
    except (TunError, ValueError) as exc:
        log = Logger(name, level).daemon
        log.verbose("Starting wgpy version %s", __version__)
        log.error("Failed to create TUN device: %s", exc)
        if keylog is not None:
            keylog.close()
        return EXIT_SETUP_FAILED
    name = tun.name  # the kernel's: `wg%d` became `wg0`
    log = Logger(name, level).daemon
    log.verbose("Starting wgpy version %s", __version__)
    if keylog is not None:
        keylog.report_open(log)
    try:
        uapi_fd = _fd_from_env(ENV_UAPI_FD)
        uapi = listen(name) if uapi_fd is None else socket.socket(fileno=uapi_fd)
    except (OSError, SocketInUse, ValueError) as exc:
        log.error("UAPI listen error: %s", exc)
        tun.close()
        if keylog is not None:
            keylog.close()
        return EXIT_SETUP_FAILED

    if not foreground:
        if keylog is not None:
            keylog.close()  # the background copy opens it again (it reads the same variable)
        return _daemonize([name], tun, uapi, log, metrics)
    return _run(tun, uapi, log, switch, metrics, keylog, workers)


def _metrics_listener() -> socket.socket | None:
    """The metrics server's listening socket: adopted from the launcher (WGPY_METRICS_FD)
    or bound to WGPY_METRICS_ADDRESS, before daemonizing so that a bad address fails the
    command; None when neither is set."""
    fd = _fd_from_env(ENV_METRICS_FD)
    if fd is not None:
        os.environ.pop(ENV_METRICS_FD)
        return socket.socket(fileno=fd)
    address = os.environ.get(ENV_METRICS, "").strip()
    return bind(address) if address else None


def _switch_interval() -> float:
    """WGPY_SWITCH: the interpreter's thread switch interval in seconds (a tuning knob for
    measurements; 0.005, Python's own default, unless set)."""
    value = os.environ.get("WGPY_SWITCH", "").strip()
    if not value:
        return 0.005
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds <= 1:
        raise ValueError(f"WGPY_SWITCH={value[:32]!r} is not a number of seconds in (0, 1]")
    return seconds


def _crypto_workers() -> int:
    """WGPY_CRYPTO_WORKERS: threads that decrypt received batches beside the UDP reader
    (1, the default: the UDP reader decrypts them itself). Used on the compiled batch path,
    which releases the GIL while it decrypts; the pure-Python path always runs one."""
    value = os.environ.get("WGPY_CRYPTO_WORKERS", "").strip()
    if not value:
        return 1
    if not value.isdigit() or not 1 <= int(value) <= MAX_CRYPTO_WORKERS:
        raise ValueError(f"WGPY_CRYPTO_WORKERS={value[:32]!r} is not a number of threads "
                         f"from 1 to {MAX_CRYPTO_WORKERS}")
    return int(value)


def _fd_from_env(variable: str) -> int | None:
    """The file descriptor number in `variable`; None if it is unset or empty (as
    wireguard-go reads it); ValueError, for a person, if it is not a number."""
    value = os.environ.get(variable, "").strip()
    if not value:
        return None
    if not value.isdigit():
        raise ValueError(f"{variable}={value[:32]!r} is not a file descriptor number")
    return int(value)


def _set_process_title(name: str) -> None:
    """`wgpy IFNAME` in ps and /proc/PID/cmdline, `wgpy` as the process's name (comm), as
    wireguard-go shows `wireguard-go IFNAME`: the background copy is `python -m wgpy`."""
    try:
        import setproctitle
    except ImportError:  # installed without its dependencies: the name at least
        pass
    else:
        setproctitle.setproctitle(f"wgpy {name}")
    threads.set_os_name("wgpy")  # the main thread's comm is the process's name


def _daemonize(args: list[str], tun: Tun, uapi: socket.socket, log: Logger,
               metrics: socket.socket | None = None) -> int:
    """Hand the TUN and the socket to a background copy and exit 0 once it serves them;
    if the copy dies first, remove the socket file and fail."""
    ready_r, ready_w = os.pipe()
    env = dict(os.environ, **{ENV_TUN_FD: str(tun.fd), ENV_UAPI_FD: str(uapi.fileno()),
                              ENV_FOREGROUND: "1", ENV_READY_FD: str(ready_w)})
    fds: tuple[int, ...] = (tun.fd, uapi.fileno(), ready_w)
    if metrics is not None:
        env[ENV_METRICS_FD] = str(metrics.fileno())
        fds += (metrics.fileno(),)
    quiet = log.level == SILENT or not os.environ.get("LOG_LEVEL")
    stdio = subprocess.DEVNULL if quiet else None
    try:
        child = subprocess.Popen([sys.executable, "-m", "wgpy", *args], env=env,
                                 pass_fds=fds,
                                 stdin=subprocess.DEVNULL, stdout=stdio, stderr=stdio,
                                 start_new_session=True)
    except OSError as exc:
        log.error("Failed to daemonize: %s", exc)
        return EXIT_SETUP_FAILED
    finally:
        os.close(ready_w)
    ready, _, _ = select.select([ready_r], [], [], READY_TIMEOUT)
    ok = bool(ready) and os.read(ready_r, 1) == b"1"
    os.close(ready_r)
    if not ok:
        log.error("The background daemon did not start")
        if child.poll() is None:
            child.kill()
        try:
            os.unlink(uapi.getsockname())
        except OSError:
            pass
        return EXIT_SETUP_FAILED
    return 0


def _raise_nofile_limit() -> None:
    """The soft limit of open files raised to the hard one, as every Go program's runtime
    does at start (Go 1.19): wireguard-go holds a thousand UAPI clients at once where the
    soft limit is 1,024. Where it cannot be raised, the UAPI server keeps within it."""
    import resource  # noqa: PLC0415

    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (OSError, ValueError):
        pass


def _run(tun: Tun, uapi: socket.socket, log: Logger, switch: float = 0.005,
         metrics: socket.socket | None = None, keylog: KeyLog | None = None,
         workers: int = 1) -> int:
    sys.setswitchinterval(switch)
    _set_process_title(tun.name)  # before the threads: each new thread inherits the name
    device = Device(tun, Logger(tun.name, log.level), keylog, crypto_workers=workers)
    server = UapiServer(device, uapi)

    def on_signal(signum: int, _frame: object) -> None:
        device.stop(f"signal {signal.Signals(signum).name}")

    faulthandler.register(signal.SIGUSR1, all_threads=True)  # thread dump for debugging
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal_r, signal_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(signal_w)  # written by whichever thread the kernel gave a signal
    if os.getpid() == 1:  # a container's init: orphans it adopts (wg-quick's daemons) are reaped
        signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    device.start()
    start_watching(device)  # the link's state known before a client may change it
    device.spawn("uapi_accept", server.serve)
    if metrics is not None:
        from wgpy.observe.metrics_http import serve_metrics  # noqa: PLC0415 - 3 MiB, if asked
        serve_metrics(device, metrics)
    log.verbose("Device started")
    ready_fd = os.environ.pop(ENV_READY_FD, None)
    if ready_fd is not None:  # tell the launcher we serve, so it may exit 0
        try:
            os.write(int(ready_fd), b"1")
            os.close(int(ready_fd))
        except (OSError, ValueError):
            pass
    _wait_for_stop(device, signal_r)
    log.verbose("Shutting down: %s", device.stop_reason)
    server.close()
    device.close()
    return EXIT_CRASHED if device.failed else 0


def _wait_for_stop(device: Device, signal_r: int) -> None:
    """Sleep until the device stops, without waking up to look: on its `stop_fd` and on
    `signal_r`, the read end of the signal module's wake-up fd. Python runs a signal's
    handler in the main thread, but the kernel hands a process's signal to any thread that
    does not block it; when that is another thread, only the byte the signal module writes
    to the wake-up fd rouses this one to run the handler (an Event.wait() without a
    timeout would sleep on, the handler pending). The handler calls `device.stop`, which
    makes `stop_fd` readable."""
    while not device.stopped.is_set():
        ready, _, _ = select.select([device.stop_fd, signal_r], [], [])
        if signal_r in ready:  # the handler runs at the next bytecode boundary
            try:
                os.read(signal_r, 512)
            except OSError:
                pass


if __name__ == "__main__":
    sys.exit(main())
