/* wgpy._fastpath, the offloads: split() of a TUN read with its virtio-net header (TSO
   super-packets into segments, checksums completed), runs() of a UDP GRO receive, and
   coalesce() of decrypted TCP segments into GSO writes. The theory of operation is in
   _fastpath.c; the rules each follows are at its function. */
#include "_fastpath.h"

/* RFC 1071 one's complement sum of big-endian 16-bit words, not yet folded. */
static inline uint16_t fold(uint64_t acc) {
    while (acc >> 16) acc = (acc & 0xFFFF) + (acc >> 16);
    return (uint16_t)acc;
}
/* RFC 1071 one's complement sum of big-endian 16-bit words, added to `acc`, not yet
   folded. The words are summed 32 bits at a time in the machine's byte order, folded,
   and the result put in network order: the sum commutes with swapping bytes (RFC 1071
   section 2(B)). */
static uint64_t sum16(const uint8_t *p, size_t n, uint64_t acc) {
    uint64_t s = 0;
    uint32_t w32;
    uint16_t w16;
    for (; n >= 16; p += 16, n -= 16) {
        uint32_t a, b, c, d;
        memcpy(&a, p, 4); memcpy(&b, p + 4, 4); memcpy(&c, p + 8, 4); memcpy(&d, p + 12, 4);
        s += (uint64_t)a + b + c + d;
    }
    for (; n >= 4; p += 4, n -= 4) { memcpy(&w32, p, 4); s += w32; }
    if (n >= 2) { memcpy(&w16, p, 2); s += w16; p += 2; n -= 2; }
    uint8_t last[2] = {n ? p[0] : 0, 0};  /* an odd last byte: the high byte of a word */
    memcpy(&w16, last, 2);
    s += w16;
    uint16_t folded = fold(s), one = 1;
    uint8_t low_first;
    memcpy(&low_first, &one, 1);
    return acc + (low_first ? (uint16_t)(folded >> 8 | folded << 8) : folded);
}


static PyObject *malformed(const char *why) {
    PyErr_SetString(PyExc_ValueError, why);
    return NULL;
}

/* Fill in the checksum at data[start + offset] over data[start:n] (NEEDS_CSUM). */
static void complete_csum(uint8_t *data, size_t n, size_t start, size_t offset) {
    put_be16(data + start + offset, (uint16_t)~fold(sum16(data + start, n - start, 0)));
}

PyObject *wgfp_split(PyObject *self, PyObject *args) {
    Py_buffer buf;
    PyObject *out = NULL;
    if (!PyArg_ParseTuple(args, "y*:split", &buf)) return NULL;
    const uint8_t *r = buf.buf;
    if (buf.len < VNET_HDR_SIZE) { malformed("shorter than a virtio-net header"); goto done; }
    uint8_t flags = r[0], gso = r[1] & ~GSO_ECN;
    size_t gso_size = get_le16(r + 4), cstart = get_le16(r + 6), coff = get_le16(r + 8);
    const uint8_t *in = r + VNET_HDR_SIZE;
    size_t n = (size_t)buf.len - VNET_HDR_SIZE;

    if (gso == GSO_NONE) {
        PyObject *p = PyBytes_FromStringAndSize((const char *)in, n);
        if (p == NULL) goto done;
        if (flags & VNET_F_NEEDS_CSUM) {
            if (cstart + coff + 2 > n) {
                Py_DECREF(p);
                malformed("checksum offset beyond the packet");
                goto done;
            }
            complete_csum((uint8_t *)PyBytes_AS_STRING(p), n, cstart, coff);
        }
        out = PyList_New(1);
        if (out == NULL) { Py_DECREF(p); goto done; }
        PyList_SET_ITEM(out, 0, p);
        goto done;
    }
    if (gso != GSO_TCPV4 && gso != GSO_TCPV6) { malformed("unsupported GSO type"); goto done; }
    int v4 = gso == GSO_TCPV4;
    /* csum_start is where TCP begins: the IP header length, options or extension headers
       included. The header length in the virtio header is only a hint (virtio spec); the
       TCP data offset says it. */
    if (n < 1 || (in[0] >> 4) != (v4 ? 4 : 6)) { malformed("IP version does not match GSO type"); goto done; }
    if (v4 ? (cstart < 20 || cstart != (size_t)(in[0] & 0x0F) * 4) : cstart < 40) {
        malformed("bad IP header length"); goto done;
    }
    if (coff != 16 || cstart + 20 > n) { malformed("bad TCP checksum offset"); goto done; }
    size_t hdr = cstart + (size_t)(in[cstart + 12] >> 4) * 4;
    if (hdr < cstart + 20 || hdr > n) { malformed("bad TCP header length"); goto done; }
    size_t payload = n - hdr;
    if (gso_size == 0 || payload == 0) { malformed("empty GSO packet"); goto done; }
    size_t count = (payload + gso_size - 1) / gso_size;
    if (count > MAX_SEGMENTS) { malformed("too many segments"); goto done; }
    if ((out = PyList_New((Py_ssize_t)count)) == NULL) goto done;
    for (size_t i = 0; i < count; i++) {
        size_t chunk = i + 1 < count ? gso_size : payload - i * gso_size;
        PyObject *p = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(hdr + chunk));
        if (p == NULL) { Py_CLEAR(out); goto done; }
        PyList_SET_ITEM(out, (Py_ssize_t)i, p);
    }
    Py_BEGIN_ALLOW_THREADS
    uint16_t id = v4 ? get_be16(in + 4) : 0;
    uint32_t seq = get_be32(in + cstart + 4);
    for (size_t i = 0; i < count; i++) {
        PyObject *p = PyList_GET_ITEM(out, (Py_ssize_t)i);
        uint8_t *s = (uint8_t *)PyBytes_AS_STRING(p);
        size_t len = (size_t)PyBytes_GET_SIZE(p), tcp_len = len - cstart;
        memcpy(s, in, hdr);
        memcpy(s + hdr, in + hdr + i * gso_size, len - hdr);
        uint64_t pseudo;
        if (v4) {
            put_be16(s + 2, (uint16_t)len);
            put_be16(s + 4, (uint16_t)(id + i));
            put_be16(s + 10, 0);
            put_be16(s + 10, (uint16_t)~fold(sum16(s, cstart, 0)));
            pseudo = sum16(s + 12, 8, 6 + tcp_len);
        } else {
            put_be16(s + 4, (uint16_t)(len - 40));
            pseudo = sum16(s + 8, 32, 6 + tcp_len);
        }
        uint8_t *t = s + cstart;
        put_be32(t + 4, seq + (uint32_t)(i * gso_size));
        if (i + 1 < count) t[13] &= ~(TCP_FIN | TCP_PSH);
        if (i > 0) t[13] &= ~TCP_CWR;
        put_be16(t + 16, 0);
        put_be16(t + 16, (uint16_t)~fold(sum16(t, tcp_len, pseudo)));
    }
    Py_END_ALLOW_THREADS
done:
    PyBuffer_Release(&buf);
    return out;
}

/* --- coalesce: TCP segments into virtio-net GSO writes (wgpy.tunoffload.coalesce) --- */

#define MAX_SUPER 65535
#define MAX_GROUP 64
#define TCP_ACK 0x10

/* (ip header length, tcp header length, payload) of a segment GRO could merge, else 0. */
static int tcp_info(const uint8_t *p, size_t n, size_t *ip, size_t *tcp, size_t *payload) {
    if (n < 40) return 0;
    if (p[0] == 0x45) {
        if (p[9] != 6 || (p[6] & 0x3F) || p[7] || get_be16(p + 2) != n) return 0;
        *ip = 20;
    } else if ((p[0] >> 4) == 6) {
        if (n < 60 || p[6] != 6 || (size_t)get_be16(p + 4) + 40 != n) return 0;
        *ip = 40;
    } else return 0;
    *tcp = (size_t)(p[*ip + 12] >> 4) * 4;
    if (*tcp < 20 || (p[*ip + 13] & ~TCP_PSH) != TCP_ACK || *ip + *tcp >= n) return 0;
    *payload = n - *ip - *tcp;
    return 1;
}

/* The fields GRO requires equal (wgpy.tunoffload._flow_key): IPv4 TOS, flags byte, TTL,
   addresses; IPv6 version/class/flow label, hop limit, addresses; TCP ports, ACK number,
   data offset, window, urgent pointer and options. */
static int same_flow(const uint8_t *a, const uint8_t *b, size_t ip, size_t tcp) {
    if (ip == 20) {
        if (a[1] != b[1] || a[6] != b[6] || a[8] != b[8] || memcmp(a + 12, b + 12, 8)) return 0;
    } else if (memcmp(a, b, 4) || a[7] != b[7] || memcmp(a + 8, b + 8, 32)) return 0;
    const uint8_t *x = a + ip, *y = b + ip;
    return !memcmp(x, y, 4) && !memcmp(x + 8, y + 8, 5) && !memcmp(x + 14, y + 14, 2)
           && !memcmp(x + 18, y + 18, 2) && !memcmp(x + 20, y + 20, tcp - 20);
}

static int segment_csum_ok(const uint8_t *p, size_t n, size_t ip) {
    if (ip == 20)
        return fold(sum16(p, 20, 0)) == 0xFFFF
               && fold(sum16(p + 20, n - 20, sum16(p + 12, 8, 6 + n - 20))) == 0xFFFF;
    return fold(sum16(p + 40, n - 40, sum16(p + 8, 32, 6 + n - 40))) == 0xFFFF;
}

/* A copy the coalescer defers until the GIL is released: the output objects are ours
   alone until returned, the inputs are kept alive by the caller's tuple. */
typedef struct { uint8_t *dst; const uint8_t *src; size_t len; } copy_job;

typedef struct {
    PyObject *out;
    PyObject *const *items;
    Py_ssize_t first, count;  /* the open group: items[first .. first + count) */
    size_t ip, tcp, mss, total;
    int psh;
    copy_job *copies;
    size_t ncopies;
} coalescer;

static int emit_alone(coalescer *c, Py_ssize_t i) {
    PyObject *p = c->items[i];
    Py_ssize_t n = PyBytes_GET_SIZE(p);
    PyObject *w = PyBytes_FromStringAndSize(NULL, VNET_HDR_SIZE + n);
    if (w == NULL) return -1;
    memset(PyBytes_AS_STRING(w), 0, VNET_HDR_SIZE);
    c->copies[c->ncopies++] = (copy_job){(uint8_t *)PyBytes_AS_STRING(w) + VNET_HDR_SIZE,
                                         (const uint8_t *)PyBytes_AS_STRING(p), (size_t)n};
    int r = PyList_Append(c->out, w);
    Py_DECREF(w);
    return r;
}

static int flush(coalescer *c) {
    Py_ssize_t count = c->count;
    c->count = 0;
    if (count == 0) return 0;
    if (count == 1) return emit_alone(c, c->first);
    const uint8_t *first = (const uint8_t *)PyBytes_AS_STRING(c->items[c->first]);
    size_t hdr = c->ip + c->tcp, tcp_total = c->total - c->ip;
    PyObject *w = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(VNET_HDR_SIZE + c->total));
    if (w == NULL) return -1;
    uint8_t *o = (uint8_t *)PyBytes_AS_STRING(w), *s = o + VNET_HDR_SIZE;
    memcpy(s, first, hdr);
    uint64_t pseudo;
    if (c->ip == 20) {
        put_be16(s + 2, (uint16_t)c->total);
        put_be16(s + 10, 0);
        put_be16(s + 10, (uint16_t)~fold(sum16(s, 20, 0)));
        pseudo = sum16(s + 12, 8, 6 + tcp_total);
    } else {
        put_be16(s + 4, (uint16_t)tcp_total);
        pseudo = sum16(s + 8, 32, 6 + tcp_total);
    }
    if (c->psh) s[c->ip + 13] |= TCP_PSH;
    put_be16(s + c->ip + 16, fold(pseudo));  /* the kernel completes it (NEEDS_CSUM) */
    o[0] = VNET_F_NEEDS_CSUM;
    o[1] = c->ip == 20 ? GSO_TCPV4 : GSO_TCPV6;
    o[2] = (uint8_t)hdr; o[3] = (uint8_t)(hdr >> 8);
    o[4] = (uint8_t)c->mss; o[5] = (uint8_t)(c->mss >> 8);
    o[6] = (uint8_t)c->ip; o[7] = 0;
    o[8] = 16; o[9] = 0;
    size_t at = VNET_HDR_SIZE + hdr;
    for (Py_ssize_t i = c->first; i < c->first + count; i++) {
        PyObject *p = c->items[i];
        size_t len = (size_t)PyBytes_GET_SIZE(p) - hdr;
        c->copies[c->ncopies++] = (copy_job){o + at, (const uint8_t *)PyBytes_AS_STRING(p) + hdr,
                                             len};
        at += len;
    }
    int r = PyList_Append(c->out, w);
    Py_DECREF(w);
    return r;
}

PyObject *wgfp_coalesce(PyObject *self, PyObject *arg) {
    PyObject *packets = wgfp_bytes_tuple(arg, "packets");
    if (packets == NULL) return NULL;
    Py_ssize_t n_packets = PyTuple_GET_SIZE(packets);
    coalescer c = {NULL, &PyTuple_GET_ITEM(packets, 0), 0, 0, 0, 0, 0, 0, 0, NULL, 0};
    char *ok = PyMem_Calloc(n_packets ? n_packets : 1, 1);  /* checksums verify */
    c.copies = PyMem_Calloc(n_packets ? n_packets : 1, sizeof(copy_job));
    uint32_t next_seq = 0;
    if (ok == NULL || c.copies == NULL) { PyErr_NoMemory(); goto fail; }
    /* The checksums, the costly part, with the GIL released. */
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n_packets; i++) {
        const uint8_t *p = (const uint8_t *)PyBytes_AS_STRING(c.items[i]);
        size_t n = (size_t)PyBytes_GET_SIZE(c.items[i]), ip, tcp, payload;
        ok[i] = tcp_info(p, n, &ip, &tcp, &payload) && segment_csum_ok(p, n, ip);
    }
    Py_END_ALLOW_THREADS
    if ((c.out = PyList_New(0)) == NULL) goto fail;
    for (Py_ssize_t i = 0; i < n_packets; i++) {
        const uint8_t *p = (const uint8_t *)PyBytes_AS_STRING(c.items[i]);
        size_t n = (size_t)PyBytes_GET_SIZE(c.items[i]), ip, tcp, payload;
        if (!tcp_info(p, n, &ip, &tcp, &payload)) {
            if (flush(&c) < 0 || emit_alone(&c, i) < 0) goto fail;
            continue;
        }
        uint32_t seq = get_be32(p + ip + 4);
        if (c.count) {
            const uint8_t *first = (const uint8_t *)PyBytes_AS_STRING(c.items[c.first]);
            if (seq == next_seq && payload <= c.mss && ip == c.ip && tcp == c.tcp
                    && c.total + payload <= MAX_SUPER && c.count < MAX_GROUP
                    && same_flow(p, first, ip, tcp)) {
                if (c.count == 1 && !ok[c.first]) {
                    if (flush(&c) < 0) goto fail;  /* alone, for the kernel to drop */
                }
                if (c.count) {
                    if (!ok[i]) {
                        if (flush(&c) < 0 || emit_alone(&c, i) < 0) goto fail;
                        continue;
                    }
                    c.count++;
                    c.total += payload;
                    next_seq = seq + (uint32_t)payload;
                    c.psh = (p[ip + 13] & TCP_PSH) != 0;
                    if ((payload < c.mss || c.psh) && flush(&c) < 0) goto fail;
                    continue;
                }
            } else if (flush(&c) < 0) goto fail;
        }
        c.first = i; c.count = 1;
        c.ip = ip; c.tcp = tcp; c.mss = payload; c.total = ip + tcp + payload;
        next_seq = seq + (uint32_t)payload;
        c.psh = (p[ip + 13] & TCP_PSH) != 0;
        if (c.psh && flush(&c) < 0) goto fail;
    }
    if (flush(&c) < 0) goto fail;
    /* The payloads, with the GIL released again. */
    Py_BEGIN_ALLOW_THREADS
    for (size_t j = 0; j < c.ncopies; j++) memcpy(c.copies[j].dst, c.copies[j].src, c.copies[j].len);
    Py_END_ALLOW_THREADS
    PyMem_Free(ok);
    PyMem_Free(c.copies);
    Py_DECREF(packets);
    return c.out;
fail:
    PyMem_Free(ok);
    PyMem_Free(c.copies);
    Py_XDECREF(c.out);
    Py_DECREF(packets);
    return NULL;
}

/* --- runs: one UDP receive (GRO) into runs of transport data (the UDP reader) --- */

/* A GRO receive holds datagrams of one source cut at `segment` bytes (the last one may
   be shorter). Consecutive transport data messages (type 4, at least a header and a tag)
   with one receiver index make a run, (index, [datagrams]); any other datagram stands
   alone, (-1, [datagram]), for the handshake path to classify. */
PyObject *wgfp_runs(PyObject *self, PyObject *args) {
    Py_buffer buf;
    Py_ssize_t segment;
    PyObject *out = NULL, *run = NULL;
    long run_index = -2;
    if (!PyArg_ParseTuple(args, "y*n:runs", &buf, &segment)) return NULL;
    if (segment <= 0) {
        PyErr_SetString(PyExc_ValueError, "segment size must be positive");
        goto done;
    }
    if ((out = PyList_New(0)) == NULL) goto done;
    for (Py_ssize_t at = 0; at < buf.len; at += segment) {
        Py_ssize_t len = buf.len - at < segment ? buf.len - at : segment;
        const uint8_t *d = (const uint8_t *)buf.buf + at;
        PyObject *datagram = PyBytes_FromStringAndSize((const char *)d, len);
        if (datagram == NULL) { Py_CLEAR(out); goto done; }
        long index = -1;
        if (len >= HEADER_SIZE + TAG_SIZE && d[0] == MESSAGE_TRANSPORT && !d[1] && !d[2] && !d[3])
            index = (long)((uint32_t)d[4] | (uint32_t)d[5] << 8 | (uint32_t)d[6] << 16
                           | (uint32_t)d[7] << 24);
        if (index >= 0 && index == run_index) {
            int r = PyList_Append(run, datagram);
            Py_DECREF(datagram);
            if (r < 0) { Py_CLEAR(out); goto done; }
            continue;
        }
        run = PyList_New(1);
        if (run == NULL) { Py_DECREF(datagram); Py_CLEAR(out); goto done; }
        PyList_SET_ITEM(run, 0, datagram);
        PyObject *item = Py_BuildValue("(lN)", index, run);  /* the tuple owns the run */
        if (item == NULL || PyList_Append(out, item) < 0) {
            Py_XDECREF(item);
            Py_CLEAR(out);
            goto done;
        }
        Py_DECREF(item);
        run_index = index;
    }
done:
    PyBuffer_Release(&buf);
    return out;
}

