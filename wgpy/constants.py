"""Every constant of wgpy, in one place.

"Specification" constants come from the WireGuard paper (section 6, "Timers & Stateless
UX"), the kernel's ``messages.h`` and wireguard-go's ``device/constants.go``; they use the
paper's names and are given in float seconds. "Implementation" constants are our own
choices (queue sizes, limits), taken from the kernel or wireguard-go where one exists.
Sizes are derived, never retyped.
"""

from __future__ import annotations

# ---------------------------------------------------------------------------------------------
# Specification constants
# ---------------------------------------------------------------------------------------------

# Noise and WireGuard identity strings (paper section 5.4).
CONSTRUCTION = b"Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s"
IDENTIFIER = b"WireGuard v1 zx2c4 Jason@zx2c4.com"
LABEL_MAC1 = b"mac1----"
LABEL_COOKIE = b"cookie--"

# Primitive sizes.
KEY_SIZE = 32  # X25519 keys, ChaCha20 keys, BLAKE2s-256 digests
HASH_SIZE = 32
TAG_SIZE = 16  # Poly1305
MAC_SIZE = 16  # keyed BLAKE2s-128
TIMESTAMP_SIZE = 12  # TAI64N
XNONCE_SIZE = 24  # XChaCha20-Poly1305 nonce
COOKIE_SIZE = 16


def encrypted_size(plain: int) -> int:
    """Length of an AEAD ciphertext of `plain` bytes (kernel `noise_encrypted_len`)."""
    return plain + TAG_SIZE


# Message types (the first byte; the next three are zero).
MESSAGE_INITIATION = 1
MESSAGE_RESPONSE = 2
MESSAGE_COOKIE_REPLY = 3
MESSAGE_TRANSPORT = 4

# Message sizes, derived from their fields.
INITIATION_SIZE = 4 + 4 + KEY_SIZE + encrypted_size(KEY_SIZE) + encrypted_size(TIMESTAMP_SIZE) \
    + 2 * MAC_SIZE
RESPONSE_SIZE = 4 + 4 + 4 + KEY_SIZE + encrypted_size(0) + 2 * MAC_SIZE
COOKIE_REPLY_SIZE = 4 + 4 + XNONCE_SIZE + encrypted_size(COOKIE_SIZE)
TRANSPORT_HEADER_SIZE = 4 + 4 + 8
TRANSPORT_MIN_SIZE = TRANSPORT_HEADER_SIZE + encrypted_size(0)  # a keepalive
MESSAGE_PADDING_MULTIPLE = 16

# Counters (kernel messages.h / counter.c: an 8192-bit ring less one word).
COUNTER_BITS_TOTAL = 8192
COUNTER_REDUNDANT_BITS = 64
COUNTER_WINDOW_SIZE = COUNTER_BITS_TOTAL - COUNTER_REDUNDANT_BITS  # 8128
REKEY_AFTER_MESSAGES = 1 << 60
REJECT_AFTER_MESSAGES = (1 << 64) - 1 - COUNTER_WINDOW_SIZE - 1

# Timers, in seconds (paper section 6.1).
REKEY_AFTER_TIME = 120.0
REJECT_AFTER_TIME = 180.0
REKEY_ATTEMPT_TIME = 90.0
REKEY_TIMEOUT = 5.0
KEEPALIVE_TIMEOUT = 10.0
REKEY_TIMEOUT_JITTER_MAX = 1.0 / 3.0  # kernel: HZ / 3
MAX_TIMER_HANDSHAKES = int(REKEY_ATTEMPT_TIME / REKEY_TIMEOUT)  # 18
NEW_HANDSHAKE_TIMEOUT = KEEPALIVE_TIMEOUT + REKEY_TIMEOUT  # unanswered data -> handshake
ZERO_KEY_MATERIAL_TIMEOUT = REJECT_AFTER_TIME * 3
# An initiator whose key is this old re-handshakes on receive ("last minute" rekey).
REKEY_ON_RECEIVE_AGE = REJECT_AFTER_TIME - KEEPALIVE_TIMEOUT - REKEY_TIMEOUT

# Cookies (paper section 5.4.7; kernel cookie.c).
COOKIE_SECRET_MAX_AGE = 120.0
COOKIE_SECRET_LATENCY = 5.0
COOKIE_VALID_FOR = COOKIE_SECRET_MAX_AGE - COOKIE_SECRET_LATENCY  # on the initiator

# Initiation flood guard per peer (kernel noise.c): one consumed initiation per 20 ms.
INITIATIONS_PER_SECOND = 50
INITIATION_MIN_INTERVAL = 1.0 / INITIATIONS_PER_SECOND

# Timestamps are whitened to 2**24 ns so they do not leak the clock (kernel/wireguard-go).
TAI64N_BASE = (1 << 62) + 10
TAI64N_WHITENER_NS = 1 << 24

# TCP and IP for the userspace stack (wgpy/netstack/): RFC 9293 (TCP), RFC 6298 (the
# retransmission timer), RFC 5681 (congestion control), RFC 7323 (window scale), RFC 6928
# (initial window), RFC 879 / RFC 8200 (default MSS).
TCP_DEFAULT_MSS_V4 = 536
TCP_DEFAULT_MSS_V6 = 1220
TCP_HEADER_MIN = 20
UDP_HEADER_SIZE = 8
TCP_MAX_WINDOW = 0xFFFF  # the 16-bit window field
TCP_MAX_WSCALE = 14
TCP_INITIAL_RTO = 1.0
TCP_INITIAL_CWND_SEGMENTS = 10
TCP_DUPACK_THRESHOLD = 3
TCP_MSL = 30.0  # TIME-WAIT lasts 2 MSL (Linux: 60 s in all)

# ---------------------------------------------------------------------------------------------
# Implementation constants
# ---------------------------------------------------------------------------------------------

# Handshake rate limiter per source address (kernel ratelimiter.c).
RATELIMIT_PACKETS_PER_SECOND = 20
RATELIMIT_PACKETS_BURST = 5
RATELIMIT_GC_INTERVAL = 1.0  # entries idle this long are forgotten
RATELIMIT_MAX_ENTRIES = 1 << 16

MAX_PEERS = 1 << 20  # kernel
MAX_STAGED_PACKETS = 128  # per peer; the oldest is dropped when full
MAX_QUEUED_INCOMING_HANDSHAKES = 4096
MAX_QUEUED_PROVEN_HANDSHAKES = MAX_QUEUED_INCOMING_HANDSHAKES // 4  # mac2 valid, under load
UNDER_LOAD_THRESHOLD = MAX_QUEUED_INCOMING_HANDSHAKES // 8  # "under load" from this fill level
UNDER_LOAD_AFTER = 1.0  # stay under load this long after the queue drains (wireguard-go)
MAX_BATCH = 128  # packets per queue hand-off
DROP_LOG_INTERVAL = 1.0  # verbose "Dropped N: reason" lines: at most one a second per reason
# Crypto workers (WGPY_CRYPTO_WORKERS, compiled batch path only): threads that decrypt
# received batches while the UDP reader reads the next; each may have this many batches
# waiting, then the reader waits for them (the socket's buffer holds the rest).
MAX_CRYPTO_WORKERS = 16
RX_JOBS_PER_WORKER = 2
# A handshake message that finds the handshake queue empty is answered on the UDP reader
# itself, saving a thread hand-off on the first packet's critical path; at most this many
# a second (a token bucket), so a flood still goes through the queue and its under-load
# logic, and the data path never spends more than a few percent of a core on them.
INLINE_HANDSHAKES_PER_SECOND = 20
INLINE_HANDSHAKE_BURST = 4

# A UDP receive that fails is retried after a pause, at most this many times in a row;
# then (or at once for an error that is not transient) that socket is no longer read
# until the next rebind (wireguard-go RoutineReceiveIncoming's "death spiral").
UDP_RECEIVE_RETRIES = 10
UDP_RECEIVE_RETRY_PAUSE = 1.0 / 3.0

DEFAULT_MTU = 1420
DEFAULT_PORT = 0  # random
MEMORY_TUN_WRITE_TIMEOUT = 5.0  # a program's write into an in-memory interface not read
# How long the device waits for the program to read, per batch, before the in-memory
# interface drops (a datagram socketpair holds only net.unix.max_dgram_qlen packets, 10
# by default, where a TUN's queue holds txqueuelen, 1000): the reader is in-process.
MEMORY_TUN_DELIVER_WAIT = 0.02

# The UAPI server (wgpy/ipc/server.py).
UAPI_SOCKET_MODE = 0o700  # srwx------, what wireguard-go's umask 077 leaves of 0777
MAX_CLIENTS = 1024  # connections at once; when full, the quietest one makes room
FD_RESERVE = 64  # file descriptors never taken by UAPI connections (TUN, sockets, netlink)
CLIENT_IDLE_TIMEOUT = 30.0  # silence allowed between requests
REQUEST_DEADLINE = 30.0  # a request must be whole within this of its first byte
SET_DEADLINE = 30.0  # a set holding config_lock must end within this time of getting it
REPLY_DEADLINE = 30.0  # a reply must be taken by the client within this time
INPUT_BUDGET = 8 << 20  # unparsed input held for all connections together
REPLY_BUDGET = 64 << 20  # unsent replies held for all connections together
MAX_WORKERS = 8  # threads that answer requests (sets mostly wait for each other)
WORKER_IDLE = 5.0  # a worker with nothing to do for this long exits
WATCH_INTERVAL = 0.5  # how often the socket file is checked (lstat) when inotify is missing
ACCEPT_PAUSE = 0.2  # out of fds with no connection to close: accept again after this
# Larger reads gain nothing measurable, and what a read takes in decides how much of a
# failed set is dropped (wireguard-go drops what it had buffered; compat tests compare).
RECV_SIZE = 1 << 16
SEND_SIZE = 1 << 18  # a get reply goes out in writes of about this size
PEERS_PER_HOLD = 64  # peers a get (or a metrics scrape) copies per hold of the device lock
# While a UAPI thread works, the GIL changes hands at least this often: a data-path thread
# that wakes for a packet waits at most about this long behind a big get or set (the
# interpreter's default, 5 ms, added up to 10 ms to a ping through the tunnel per round
# trip). Only while UAPI work runs (wgpy.ipc.sharing), so the data path keeps 5 ms.
UAPI_SWITCH_INTERVAL = 0.0005

# The metrics server (wgpy/observe/metrics.py, WGPY_METRICS_ADDRESS).
METRICS_DEFAULT_PORT = 9586  # wireguard_exporter's
METRICS_MAX_CLIENTS = 4  # connections served at once; more are closed at once
METRICS_CLIENT_DEADLINE = 5.0  # for a whole request and reply, then the socket is shut down


# IP header sizes used to bound padding and to read inner packets.
IPV4_HEADER_MIN = 20
IPV6_HEADER_SIZE = 40

# The netlink watcher (wgpy/link/netlink.py) and its pyroute2 calls (wgpy/link/rtnetlink.py).
NETLINK_MOVE_SETTLE = 0.2  # after RTM_DELLINK: time for a deleted TUN to show as deleted
NETLINK_MAX_DRAIN = 1 << 16  # datagrams drained per wake-up (more than a full receive
#                              buffer holds), so that a route flood costs few read-backs
NETLINK_RECV_SIZE = 65536  # a notification's datagram is far smaller
NETLINK_MONITOR_RCVBUF = 4 << 20  # the monitor's receive buffer (SO_RCVBUFFORCE as root)
NETLINK_REQUEST_TIMEOUT = 60.0  # per route dump: pyroute2 reads 60,000 routes in ~6 s
NETLINK_RETRY_DELAY = 0.5  # after a failed read-back or monitor open, doubling up to
NETLINK_COLLECT_EVERY = 1000  # pyroute2 messages parsed between collections of their cycles
NETLINK_FOLLOW_WAIT = 5.0  # at start, for the monitor and the first read-back, at most
NETLINK_RETRY_MAX = 30.0  # this: the thread retries for ever, never faster than this

# The userspace TCP/IP stack (wgpy/netstack/), Linux's values where it has one.
TCP_MIN_RTO = 0.2  # Linux TCP_RTO_MIN
TCP_MAX_RTO = 120.0  # Linux TCP_RTO_MAX
TCP_SYN_RETRIES = 6  # Linux tcp_syn_retries: a connect gives up after ~127 s
TCP_RETRIES = 15  # Linux tcp_retries2: an established connection after ~15 min
TCP_BUFFER = 1 << 20  # send and receive buffer of a connection, bytes
TCP_MAX_OUT_OF_ORDER = 2048  # segments kept ahead of a hole (in all at most the window)
TCP_ACCEPT_BACKLOG = 128  # connections waiting in a listener's queue
EPHEMERAL_PORTS = (32768, 60999)  # Linux ip_local_port_range
