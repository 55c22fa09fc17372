"""One TCP connection (RFC 9293), sans-IO: segments and `now` in, IP packets out.

Theory of operation: a `Connection` is the transmission control block of RFC 9293 section
3.3.1 (SND.UNA, SND.NXT, SND.WND, RCV.NXT, ...) with its two byte buffers. The stack hands
it each segment for its four-tuple (`receive`), the program writes and reads bytes
(`write`, `read`) and closes (`close`, or `abort` for a reset), and `output(now)` hands
back the IP packets due now: data the windows allow, a FIN once all data is out, and an
ACK when one is owed. `tick(now)` runs the timers: retransmission (RFC 6298: SRTT, RTTVAR,
Karn's rule, doubling back-off), the zero-window probe, and TIME-WAIT.

Receiving follows section 3.10.7: the acceptability test on sequence numbers, RST and SYN
checked against RFC 5961 (an in-window RST or any SYN in a synchronized state earns a
challenge ACK, only an exact RST resets), then the ACK, then the payload in order (a
segment ahead of a hole waits in a bounded out-of-order map and a duplicate ACK tells the
sender at once), then the FIN. Sending is Reno with NewReno's partial acknowledgements
(RFC 5681, RFC 6582): slow start from ten segments (RFC 6928), fast retransmit on the
third duplicate ACK, and a retransmission timeout restarting from SND.UNA with one segment.

ACKs are not delayed by a timer: `receive` only marks one as owed, and the stack's caller
collects `output` after each batch of packets, so one ACK answers a batch. Not
implemented: SACK, timestamps, urgent data, simultaneous open; none is offered, so a peer
does not use them.
"""

from __future__ import annotations

import enum
import errno

from wgpy.constants import (
    TCP_BUFFER, TCP_DEFAULT_MSS_V4, TCP_DEFAULT_MSS_V6, TCP_DUPACK_THRESHOLD,
    TCP_INITIAL_CWND_SEGMENTS, TCP_INITIAL_RTO, TCP_MAX_OUT_OF_ORDER, TCP_MAX_RTO,
    TCP_MAX_WINDOW, TCP_MIN_RTO, TCP_MSL, TCP_RETRIES, TCP_SYN_RETRIES,
)
from wgpy.netstack import ip
from wgpy.netstack.segment import (
    ACK, FIN, PSH, RST, SEQ_MASK, SYN, Segment, header, seq_le, seq_lt,
)

__all__ = ["State", "Connection"]

_CLOCK_GRANULARITY = 0.001  # G of RFC 6298: our clock is a float of seconds


class State(enum.Enum):
    SYN_SENT = "SYN-SENT"
    SYN_RECEIVED = "SYN-RECEIVED"
    ESTABLISHED = "ESTABLISHED"
    FIN_WAIT_1 = "FIN-WAIT-1"
    FIN_WAIT_2 = "FIN-WAIT-2"
    CLOSE_WAIT = "CLOSE-WAIT"
    CLOSING = "CLOSING"
    LAST_ACK = "LAST-ACK"
    TIME_WAIT = "TIME-WAIT"
    CLOSED = "CLOSED"


# States in which the peer may still send us data, and those in which we may still send.
_RECEIVING = {State.ESTABLISHED, State.FIN_WAIT_1, State.FIN_WAIT_2}
_SENDING = {State.ESTABLISHED, State.CLOSE_WAIT, State.FIN_WAIT_1, State.CLOSING,
            State.LAST_ACK}


def _sub(a: int, b: int) -> int:
    return (a - b) & SEQ_MASK


class Connection:
    """A TCP connection between (`local`, `local_port`) and (`remote`, `remote_port`):
    addresses packed (4 or 16 bytes). Open with `connect` or, for a listener's SYN,
    `accept_syn`."""

    def __init__(self, local: bytes, local_port: int, remote: bytes, remote_port: int,
                 iss: int, mtu: int) -> None:
        self.local, self.local_port = local, local_port
        self.remote, self.remote_port = remote, remote_port
        v4 = len(local) == 4
        self.mss_local = mtu - (40 if v4 else 60)
        self.mss = min(TCP_DEFAULT_MSS_V4 if v4 else TCP_DEFAULT_MSS_V6, self.mss_local)
        self.state = State.CLOSED
        self.error: int | None = None  # errno: ECONNREFUSED, ECONNRESET, ETIMEDOUT
        self.iss = iss
        self.snd_una = self.snd_nxt = iss
        self.snd_max = iss  # the highest SND.NXT: a timeout sends again from SND.UNA
        self.snd_wnd = 0
        self.snd_wl1 = self.snd_wl2 = 0
        self.snd_wscale = self.rcv_wscale = 0
        self.irs = self.rcv_nxt = 0
        self.send_buffer = bytearray()  # from SND.UNA: sent and not acknowledged, then unsent
        self.recv_buffer = bytearray()  # in order, not yet read by the program
        self._out_of_order: dict[int, bytes] = {}  # seq -> payload, ahead of RCV.NXT
        self._fin_at: int | None = None  # the peer's FIN, seen ahead of a hole
        self.peer_closed = False  # the peer's FIN is in order: read() ends with b""
        self._closing = False  # close() called: a FIN follows the data
        self._fin_seq: int | None = None  # our FIN's sequence number once sent
        self._ack_owed = False
        self._dup_acks_owed = 0  # one immediate ACK per segment out of order (RFC 5681 4.2)
        self._probe_owed = False  # a one-byte probe of the peer's zero window
        self._out_of_order_bytes = 0
        self._reset_owed = False
        self._reset_seq: int | None = None  # an RST answering a bad ACK: <SEQ=SEG.ACK>
        self._resend_owed = False  # one segment from SND.UNA (fast retransmit)
        self._wscale_ok = False  # both SYNs carried the window scale option
        self._adv_edge = 0  # the right edge of the window we last advertised
        # Retransmission (RFC 6298) and congestion control (RFC 5681).
        self.rto = TCP_INITIAL_RTO
        self.srtt: float | None = None
        self.rttvar = 0.0
        self._timing: tuple[int, float] | None = None  # (seq acked when, sent at)
        self._rto_at: float | None = None
        self._retries = 0
        self.cwnd = TCP_INITIAL_CWND_SEGMENTS * self.mss
        self.ssthresh = 1 << 30
        self._dupacks = 0
        self._recover: int | None = None  # SND.NXT when fast recovery began
        # RFC 6582's "recover" kept after recovery or a timeout, until SND.UNA passes it:
        # duplicate ACKs for data sent before it (the copies a go-back resent) start no
        # new fast retransmit.
        self._high_water: int | None = None
        self._time_wait_at: float | None = None
        self.retransmitted = 0  # segments sent again (a figure for tests and metrics)

    # --- the program's side ----------------------------------------------------------------

    def connect(self, now: float) -> None:
        """Active open: a SYN goes out with the next `output`."""
        self.state = State.SYN_SENT

    def accept_syn(self, seg: Segment, now: float) -> None:
        """Passive open, from a listener: the SYN-ACK goes out with the next `output`."""
        self.state = State.SYN_RECEIVED
        self.irs, self.rcv_nxt = seg.seq, (seg.seq + 1) & SEQ_MASK
        self._take_syn_options(seg)
        self.snd_wnd = seg.window  # never scaled in a SYN (RFC 7323 2.2)
        self.snd_wl1, self.snd_wl2 = seg.seq, self.iss

    def write(self, data: bytes) -> int:
        """Queue bytes to send; how many fit in the send buffer (0 when it is full).
        Raises BrokenPipeError once the connection is closed for sending."""
        if self._closing or self.state not in _SENDING | {State.SYN_SENT, State.SYN_RECEIVED}:
            raise BrokenPipeError(self.error or errno.EPIPE, "connection closed for sending")
        room = TCP_BUFFER - len(self.send_buffer)
        self.send_buffer += data[:room]
        return min(room, len(data))

    def read(self, limit: int) -> bytes:
        """Up to `limit` bytes received in order; b"" when none wait (see `peer_closed`)."""
        data = bytes(self.recv_buffer[:limit])
        del self.recv_buffer[:limit]
        # Receiver side of silly window avoidance (RFC 9293 3.8.6.2.2): tell the sender
        # once the window can move by a segment or half the buffer.
        if data and self.state in _RECEIVING and _sub(
                (self.rcv_nxt + self._window()) & SEQ_MASK, self._adv_edge) >= min(
                TCP_BUFFER // 2, self.mss_local):
            self._ack_owed = True
        return data

    def close(self) -> None:
        """No more data from us: a FIN follows what is queued."""
        if self.state in (State.SYN_SENT, State.CLOSED):
            self.state = State.CLOSED
        elif self.state in (State.ESTABLISHED, State.SYN_RECEIVED):
            self._closing = True
            self.state = State.FIN_WAIT_1 if self.state == State.ESTABLISHED else self.state
        elif self.state == State.CLOSE_WAIT:
            self._closing = True
            self.state = State.LAST_ACK

    def abort(self) -> None:
        """Reset the connection (RFC 9293 ABORT): an RST goes out with the next `output`."""
        if self.state in _SENDING or self.state in (State.SYN_RECEIVED, State.FIN_WAIT_2):
            self._reset_owed = True
        self._enter_closed(None)

    @property
    def unsent(self) -> int:
        return len(self.send_buffer) - min(_sub(self.snd_nxt, self.snd_una),
                                           len(self.send_buffer))

    @property
    def writable(self) -> int:
        return TCP_BUFFER - len(self.send_buffer)

    # --- segments from the peer ------------------------------------------------------------

    def receive(self, seg: Segment, now: float) -> None:
        if self.state == State.SYN_SENT:
            self._receive_in_syn_sent(seg, now)
            return
        if self.state == State.CLOSED:
            return
        if not self._acceptable(seg):
            if seg.flags & RST:
                return
            self._ack_owed = True  # RFC 9293: an ACK for an unacceptable segment
            if (self.state == State.TIME_WAIT and seg.flags & FIN
                    and (seg.seq + len(seg.payload) + 1) & SEQ_MASK == self.rcv_nxt):
                self._time_wait_at = now + 2 * TCP_MSL  # the peer resent its FIN (Linux)
            elif (self.state == State.SYN_RECEIVED and seg.flags & SYN
                  and seg.seq == self.irs and self.snd_max == (self.iss + 1) & SEQ_MASK
                  and self.snd_una == self.iss):
                self._ack_owed = False
                self.snd_nxt = self.iss  # the peer resent its SYN: so do we our SYN-ACK
            elif (self._window() == 0 and seg.seq == self.rcv_nxt and seg.flags & ACK
                  and not seg.flags & SYN and self.state != State.SYN_RECEIVED):
                # RFC 9293 3.10.7.4: with no window, a valid ACK is still taken.
                self._process_ack(seg, now)
            return
        if seg.flags & RST:
            if seg.seq == self.rcv_nxt:
                self._enter_closed(errno.ECONNRESET if self.state != State.SYN_RECEIVED
                                   else errno.ECONNREFUSED)
            else:
                self._ack_owed = True  # RFC 5961 3.2: challenge ACK
            return
        if seg.flags & SYN:
            self._ack_owed = True  # RFC 5961 4.2: challenge ACK, never a reset
            return
        if not seg.flags & ACK:
            return
        if self.state == State.SYN_RECEIVED:
            if not (seq_lt(self.snd_una, seg.ack) and seq_le(seg.ack, self.snd_max)):
                self._reset_owed, self._reset_seq = True, seg.ack  # <SEQ=SEG.ACK><CTL=RST>
                return
            self.state = State.FIN_WAIT_1 if self._closing else State.ESTABLISHED
            self.snd_una = self.snd_nxt = seg.ack  # our SYN, no byte of the send buffer
            self._sample_rtt(seg.ack, now)
            self._rto_at, self._retries = None, 0
            self.snd_wl1, self.snd_wl2 = seg.seq, seg.ack
            self.snd_wnd = seg.window << self.snd_wscale
        if not self._process_ack(seg, now):
            return
        if self.state == State.CLOSED:
            return
        whole = self._process_payload(seg)
        if seg.flags & FIN and whole and self.state in _RECEIVING:
            self._fin_at = (seg.seq + len(seg.payload)) & SEQ_MASK
        if self._fin_at is not None and self._fin_at == self.rcv_nxt:
            self._process_fin(now)

    def _receive_in_syn_sent(self, seg: Segment, now: float) -> None:
        acceptable = False
        if seg.flags & ACK:
            if seq_le(seg.ack, self.iss) or seq_lt(self.snd_max, seg.ack):
                if not seg.flags & RST:
                    self._reset_owed, self._reset_seq = True, seg.ack
                return
            acceptable = True
        if seg.flags & RST:
            if acceptable:
                self._enter_closed(errno.ECONNREFUSED)
            return
        if not seg.flags & SYN or not acceptable:
            return  # a bare SYN (simultaneous open) is not supported: it times out
        self.irs, self.rcv_nxt = seg.seq, (seg.seq + 1) & SEQ_MASK
        self._take_syn_options(seg)
        self.snd_una = self.snd_nxt = seg.ack  # our SYN, no byte of the send buffer
        self.snd_wnd = seg.window  # never scaled in a SYN (RFC 7323 2.2)
        self.snd_wl1, self.snd_wl2 = seg.seq, seg.ack
        self._sample_rtt(seg.ack, now)
        self._rto_at, self._retries = None, 0
        self.state = State.ESTABLISHED
        self._ack_owed = True

    def _take_syn_options(self, seg: Segment) -> None:
        if seg.mss:
            self.mss = min(seg.mss, self.mss_local)
        self.cwnd = TCP_INITIAL_CWND_SEGMENTS * self.mss
        # We offer window scaling in every SYN we send, so the peer's offer decides: both
        # use it or neither (RFC 7323 2.2).
        self._wscale_ok = seg.wscale is not None
        self.snd_wscale = seg.wscale or 0
        self.rcv_wscale = self._our_wscale() if self._wscale_ok else 0

    def _acceptable(self, seg: Segment) -> bool:
        """RFC 9293 3.10.7.4, the four cases of SEG.LEN and RCV.WND."""
        window = self._window()
        if seg.length == 0:
            if window == 0:
                return seg.seq == self.rcv_nxt
            return seq_le(self.rcv_nxt, seg.seq) and seq_lt(seg.seq, self.rcv_nxt + window)
        if window == 0:
            return False
        end = (seg.seq + seg.length - 1) & SEQ_MASK
        right = (self.rcv_nxt + window) & SEQ_MASK
        return ((seq_le(self.rcv_nxt, seg.seq) and seq_lt(seg.seq, right))
                or (seq_le(self.rcv_nxt, end) and seq_lt(end, right)))

    def _process_ack(self, seg: Segment, now: float) -> bool:
        """SND.UNA, the send window, RTT, congestion window and our FIN. False: stop here."""
        ack = seg.ack
        if seq_lt(self.snd_max, ack):
            self._ack_owed = True  # acknowledges what we never sent
            return False
        flight = _sub(self.snd_max, self.snd_una)
        if seg.window == 0:
            self._retries = 0  # the peer answers our window probes: it is alive (Linux)
        if seq_lt(self.snd_una, ack):
            acked = _sub(ack, self.snd_una)
            del self.send_buffer[:min(acked, len(self.send_buffer))]
            self.snd_una = ack
            if seq_lt(self.snd_nxt, ack):
                self.snd_nxt = ack  # after a timeout: the peer had more than we resent
            self._sample_rtt(ack, now)
            self._retries = 0
            if self._high_water is not None and seq_le(self._high_water, ack):
                self._high_water = None
            self._grow_cwnd(acked)
            self._dupacks = 0
            self._rto_at = None if self.snd_una == self.snd_max else now + self.rto
        elif (ack == self.snd_una and flight and not seg.payload and not seg.flags & FIN
              and seg.window << self.snd_wscale == self.snd_wnd):
            self._duplicate_ack()
        if seq_le(self.snd_una, ack) and (seq_lt(self.snd_wl1, seg.seq) or (
                self.snd_wl1 == seg.seq and seq_le(self.snd_wl2, ack))):
            self.snd_wnd = seg.window << self.snd_wscale
            self.snd_wl1, self.snd_wl2 = seg.seq, ack
        if self._fin_seq is not None and seq_lt(self._fin_seq, self.snd_una):
            if self.state == State.FIN_WAIT_1:
                self.state = State.FIN_WAIT_2
            elif self.state == State.CLOSING:
                self._enter_time_wait(now)
            elif self.state == State.LAST_ACK:
                self._enter_closed(None)
        return True

    def _grow_cwnd(self, acked: int) -> None:
        if self._recover is not None:  # RFC 6582 3.2
            if seq_lt(self.snd_una, self._recover):  # a partial ACK: the next hole now
                self._retransmit_first()
                self.cwnd = max(self.cwnd - acked + self.mss, self.mss)
                return
            self._recover, self.cwnd = None, self.ssthresh
            return
        if self.cwnd < self.ssthresh:
            self.cwnd += min(acked, self.mss)  # slow start, RFC 3465's L = 1 SMSS
        else:
            self.cwnd += max(self.mss * self.mss // self.cwnd, 1)

    def _duplicate_ack(self) -> None:
        self._dupacks += 1
        if self._recover is not None:
            self.cwnd += self.mss  # RFC 5681 3.2 step 4: inflate
        elif self._dupacks == TCP_DUPACK_THRESHOLD and self._high_water is None:
            flight = _sub(self.snd_max, self.snd_una)
            self.ssthresh = max(flight // 2, 2 * self.mss)
            self._recover = self._high_water = self.snd_max
            self._retransmit_first()
            self.cwnd = self.ssthresh + TCP_DUPACK_THRESHOLD * self.mss

    def _process_payload(self, seg: Segment) -> bool:
        """Take the segment's text, trimmed to the window RCV.NXT + RCV.WND; True if none
        of it lay beyond the right edge (so a FIN after it is in the window too)."""
        if self.state not in _RECEIVING:
            return False
        seq, data = seg.seq, seg.payload
        if seq_lt(seq, self.rcv_nxt):  # the front was received before
            cut = _sub(self.rcv_nxt, seq)
            seq, data = self.rcv_nxt, data[cut:]
        room = self._window() - _sub(seq, self.rcv_nxt)  # up to the right edge
        whole = len(data) < room or (len(data) == room and not seg.flags & FIN)
        data = data[:max(room, 0)]
        if not data:
            if seg.payload:
                self._ack_owed = True
            return whole
        if seq != self.rcv_nxt:  # ahead of a hole: keep it, say at once what we miss
            if (len(self._out_of_order) < TCP_MAX_OUT_OF_ORDER and seq not in self._out_of_order
                    and self._out_of_order_bytes + len(data) <= TCP_BUFFER):
                self._out_of_order[seq] = data
                self._out_of_order_bytes += len(data)
            self._dup_acks_owed += 1
            return whole
        self.recv_buffer += data
        self.rcv_nxt = (self.rcv_nxt + len(data)) & SEQ_MASK
        if self._out_of_order:  # what the hole held back, in sequence order
            base = (self.rcv_nxt - TCP_BUFFER) & SEQ_MASK  # every key lies after this
            for start in sorted(self._out_of_order, key=lambda k: _sub(k, base)):
                if seq_lt(self.rcv_nxt, start):
                    break  # the next hole
                chunk = self._out_of_order.pop(start)
                self._out_of_order_bytes -= len(chunk)
                skip = _sub(self.rcv_nxt, start)
                if skip < len(chunk):
                    self.recv_buffer += chunk[skip:]
                    self.rcv_nxt = (self.rcv_nxt + len(chunk) - skip) & SEQ_MASK
        self._ack_owed = True
        return whole

    def _process_fin(self, now: float) -> None:
        self._fin_at = None
        self.rcv_nxt = (self.rcv_nxt + 1) & SEQ_MASK
        self.peer_closed = True
        self._ack_owed = True
        if self.state in (State.ESTABLISHED, State.SYN_RECEIVED):
            self.state = State.CLOSE_WAIT
        elif self.state == State.FIN_WAIT_1:
            self.state = State.CLOSING  # our FIN is not acknowledged yet
        elif self.state == State.FIN_WAIT_2:
            self._enter_time_wait(now)

    # --- what goes out ---------------------------------------------------------------------

    def output(self, now: float) -> list[bytes]:
        """The IP packets due now; arms the retransmission timer for what they carry."""
        out: list[bytes] = []
        if self._reset_owed:
            self._reset_owed, seq = False, self._reset_seq
            self._reset_seq = None
            if seq is not None:  # answering an unacceptable ACK: <SEQ=SEG.ACK><CTL=RST>
                out.append(self._packet(seq, RST))
            else:  # abort()
                out.append(self._packet(self.snd_nxt, RST | ACK))
            return out
        if self.state == State.CLOSED:
            return out
        if self.state in (State.SYN_SENT, State.SYN_RECEIVED) and self.snd_nxt == self.iss:
            flags = SYN if self.state == State.SYN_SENT else SYN | ACK
            offer = self.state == State.SYN_SENT or self._wscale_ok
            out.append(self._packet(self.iss, flags, mss=self.mss_local,
                                    wscale=self._our_wscale() if offer else None))
            if self.snd_max == self.iss:  # Karn: only the first SYN is timed
                self._timing = ((self.iss + 1) & SEQ_MASK, now)
            self._advance(self.iss, 1)
        elif self.state in _SENDING:
            if self._resend_owed:
                self._resend_first(out)
            if self._probe_owed:
                self._probe(out)
            self._send_data(now, out)
        if self._dup_acks_owed:  # each the same: the segment we wait for
            ack = self._packet(self.snd_nxt, ACK)
            out += [ack] * min(self._dup_acks_owed, 64)
            self._dup_acks_owed = 0
        elif self._ack_owed:
            out.append(self._packet(self.snd_nxt, ACK))
        if self.snd_max != self.snd_una and self._rto_at is None:
            self._rto_at = now + self.rto
        return out

    def _send_data(self, now: float, out: list[bytes]) -> None:
        buffered = len(self.send_buffer)
        while True:
            offset = min(_sub(self.snd_nxt, self.snd_una), buffered)
            unsent = buffered - offset
            flight = _sub(self.snd_nxt, self.snd_una)
            room = min(self.snd_wnd, self.cwnd) - flight
            if unsent <= 0 or room <= 0:
                break
            n = min(self.mss, unsent, room)
            seq = self.snd_nxt
            payload = bytes(self.send_buffer[offset:offset + n])
            last = n == unsent
            out.append(self._packet(seq, ACK | (PSH if last else 0), payload))
            if self._timing is None and not seq_lt(seq, self.snd_max):  # Karn: new data
                self._timing = ((seq + n) & SEQ_MASK, now)
            self._advance(seq, n)
        if self.unsent and self.snd_wnd == 0 and self.snd_max == self.snd_una:
            if self._rto_at is None:
                self._rto_at = now + self.rto  # the zero-window probe (persist) timer
            return
        if (self._closing and self._fin_seq is None and self.unsent == 0):
            self._fin_seq = self.snd_nxt
            out.append(self._packet(self.snd_nxt, FIN | ACK))
            self._advance(self.snd_nxt, 1)
        elif (self._fin_seq is not None and self.snd_nxt == self._fin_seq
              and self.unsent == 0):  # resending from SND.UNA reached the FIN again
            out.append(self._packet(self.snd_nxt, FIN | ACK))
            self._advance(self.snd_nxt, 1)

    def _probe(self, out: list[bytes]) -> None:
        """One byte at SND.UNA: new if nothing is in flight, else the same byte again."""
        self._probe_owed = False
        self.retransmitted += self.snd_max != self.snd_una
        out.append(self._packet(self.snd_una, ACK, bytes(self.send_buffer[:1])))
        if self.snd_max == self.snd_una:
            self._advance(self.snd_una, 1)

    def _advance(self, seq: int, n: int) -> None:
        self.snd_nxt = (seq + n) & SEQ_MASK
        if seq_lt(self.snd_max, self.snd_nxt):
            self.snd_max = self.snd_nxt

    def _packet(self, seq: int, flags: int, payload: bytes = b"", mss: int | None = None,
                wscale: int | None = None) -> bytes:
        window = self._window()
        if flags & SYN:
            field = min(window, TCP_MAX_WINDOW)
        else:
            field = min(window >> self.rcv_wscale, TCP_MAX_WINDOW)
        if flags & ACK:
            self._ack_owed = False
            self._adv_edge = (self.rcv_nxt + (field << (0 if flags & SYN else
                                                       self.rcv_wscale))) & SEQ_MASK
        ack = self.rcv_nxt if flags & ACK else 0
        head = header(self.local_port, self.remote_port, seq, ack, flags, field, mss, wscale)
        return ip.tcp_packet(self.local, self.remote, head, payload)

    def _retransmit_first(self) -> None:
        """Fast retransmit, or a partial ACK in recovery: the segment at SND.UNA goes
        again with the next `output`; SND.NXT stays."""
        self._resend_owed = True
        self._timing = None  # Karn: no RTT sample from a retransmitted segment

    def _resend_first(self, out: list[bytes]) -> None:
        self._resend_owed = False
        self.retransmitted += 1
        data = bytes(self.send_buffer[:self.mss])
        if data:
            out.append(self._packet(self.snd_una, ACK, data))
        elif self._fin_seq is not None and self._fin_seq == self.snd_una:
            out.append(self._packet(self.snd_una, FIN | ACK))

    # --- timers ----------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        times = [t for t in (self._rto_at, self._time_wait_at) if t is not None]
        return min(times) if times else None

    def tick(self, now: float) -> None:
        if self._time_wait_at is not None and now >= self._time_wait_at:
            self._enter_closed(None)
            return
        if self._rto_at is None or now < self._rto_at:
            return
        self._rto_at = None
        limit = TCP_SYN_RETRIES if self.state in (State.SYN_SENT, State.SYN_RECEIVED) \
            else TCP_RETRIES
        if self._retries >= limit:
            self._enter_closed(errno.ETIMEDOUT)
            return
        self._retries += 1
        self.rto = min(self.rto * 2, TCP_MAX_RTO)
        if self.snd_wnd == 0 and self.send_buffer and self.state in _SENDING:
            # The persist timer (RFC 9293 3.8.6.1): probe the zero window with one byte,
            # backing off, for as long as the peer answers (its ACKs reset the count).
            self._probe_owed = True
            self._timing = None
            return
        if self.state in (State.SYN_SENT, State.SYN_RECEIVED):
            self.snd_nxt = self.iss
            self._timing = None
            self.retransmitted += 1
            return
        flight = _sub(self.snd_max, self.snd_una)
        self.ssthresh = max(flight // 2, 2 * self.mss)
        self.cwnd = self.mss
        self._recover = None
        self._high_water = self.snd_max
        self._dupacks = 0
        self._resend_owed = False
        self.snd_nxt = self.snd_una  # go back: resend all, one segment first (RFC 5681 3.1)
        self._timing = None
        self.retransmitted += 1

    def _sample_rtt(self, ack: int, now: float) -> None:
        if self._timing is None or seq_lt(ack, self._timing[0]):
            return
        r = now - self._timing[1]
        self._timing = None
        if self.srtt is None:
            self.srtt, self.rttvar = r, r / 2
        else:
            self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - r)
            self.srtt = 0.875 * self.srtt + 0.125 * r
        self.rto = min(max(self.srtt + max(_CLOCK_GRANULARITY, 4 * self.rttvar),
                           TCP_MIN_RTO), TCP_MAX_RTO)

    def _enter_time_wait(self, now: float) -> None:
        self.state = State.TIME_WAIT
        self._rto_at = None
        self._time_wait_at = now + 2 * TCP_MSL

    def _enter_closed(self, error: int | None) -> None:
        self.state = State.CLOSED
        if error is not None and self.error is None:
            self.error = error
        self._rto_at = self._time_wait_at = None

    # --- windows ---------------------------------------------------------------------------

    def _window(self) -> int:
        return max(TCP_BUFFER - len(self.recv_buffer), 0)

    @staticmethod
    def _our_wscale() -> int:
        shift = 0
        while TCP_BUFFER >> shift > TCP_MAX_WINDOW:
            shift += 1
        return shift
