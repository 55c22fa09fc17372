/* wgpy._fastpath: the optional compiled batch path (wgpy/fastpath.py chooses it).

Theory of operation. The pure-Python data path pays a few microseconds of interpreter
per packet between system calls; at a few hundred thousand packets a second that, not the
crypto, is the limit. This module takes whole batches, so the per-packet work leaves the
interpreter and, with the GIL released, runs beside the other threads:

- seal(): a batch of IP packets -> transport data messages (type 4, receiver index,
  counter, ChaCha20-Poly1305 of the packet padded to 16 bytes but never beyond the MTU:
  kernel send.c calculate_skb_padding), counters counter, counter+1, ...
- open(): a batch of transport data messages under one key -> plaintexts, None where the
  tag does not verify. The replay check and the inner-packet checks stay in Python: they
  run after authentication, on the counters the caller reads from the headers.
- split(): one TUN read with its virtio-net header -> IP packets. A GSO_TCPV4/TCPV6
  super-packet (TUNSETOFFLOAD TSO) becomes MSS-sized segments with their headers fixed as
  the kernel's tcp_gso_segment fixes them (IPv4 total length, ID + i and header checksum;
  IPv6 payload length; TCP sequence + i * MSS, FIN and PSH on the last segment only, CWR
  on the first only; full TCP checksum). A packet with NEEDS_CSUM gets its checksum
  completed at csum_start + csum_offset (the field holds the pseudo-header sum).
  wireguard-go does the same in tun/offload_linux.go (gsoSplit, gsoNoneChecksum).
- csum_ok(): the IPv4 header checksum and the TCP checksum (pseudo header included) of a
  plain TCP segment verify: the test a segment passes before it joins a coalesced TUN
  write (wgpy.tunoffload), since the kernel trusts NEEDS_CSUM super-packets.

The AEAD is OpenSSL's libcrypto (EVP ChaCha20-Poly1305), the library `cryptography` wraps:
no crypto is written here. Inputs are bytes objects (immutable, kept alive by a tuple
taken before the GIL is released); outputs are new bytes objects, allocated while the GIL
is held and filled after it is released. Bad input is a ValueError or TypeError, never a
crash; the pure-Python twins in wgpy/fastpath.py behave the same, and
tests/test_fastpath.py feeds both the same random batches.
*/
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <string.h>

#define KEY_SIZE 32
#define HEADER_SIZE 16   /* type, receiver index, counter */
#define TAG_SIZE 16
#define NONCE_SIZE 12
#define PADDING_MULTIPLE 16
#define MESSAGE_TRANSPORT 4
#define VNET_HDR_SIZE 10
#define VNET_F_NEEDS_CSUM 1
#define GSO_NONE 0
#define GSO_TCPV4 1
#define GSO_TCPV6 4
#define GSO_ECN 0x80
#define TCP_FIN 0x01
#define TCP_PSH 0x08
#define TCP_CWR 0x80
#define MAX_SEGMENTS 1024

static EVP_CIPHER *aead;

static inline void put_le32(uint8_t *p, uint32_t v) {
    p[0] = v; p[1] = v >> 8; p[2] = v >> 16; p[3] = v >> 24;
}
static inline void put_le64(uint8_t *p, uint64_t v) {
    put_le32(p, (uint32_t)v); put_le32(p + 4, (uint32_t)(v >> 32));
}
static inline uint16_t get_be16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static inline void put_be16(uint8_t *p, uint16_t v) { p[0] = v >> 8; p[1] = (uint8_t)v; }
static inline uint32_t get_be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static inline void put_be32(uint8_t *p, uint32_t v) {
    p[0] = v >> 24; p[1] = v >> 16; p[2] = v >> 8; p[3] = (uint8_t)v;
}
static inline uint16_t get_le16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

/* RFC 1071 one's complement sum of big-endian 16-bit words, not yet folded. */
static uint64_t sum16(const uint8_t *p, size_t n, uint64_t acc) {
    while (n >= 8) {
        acc += (uint64_t)get_be16(p) + get_be16(p + 2) + get_be16(p + 4) + get_be16(p + 6);
        p += 8; n -= 8;
    }
    while (n >= 2) { acc += get_be16(p); p += 2; n -= 2; }
    if (n) acc += (uint64_t)p[0] << 8;
    return acc;
}
static inline uint16_t fold(uint64_t acc) {
    while (acc >> 16) acc = (acc & 0xFFFF) + (acc >> 16);
    return (uint16_t)acc;
}

/* kernel send.c calculate_skb_padding, as wgpy.noise.peer.padding_for. */
static Py_ssize_t padded_length(Py_ssize_t n, long mtu) {
    Py_ssize_t pad = (PADDING_MULTIPLE - n % PADDING_MULTIPLE) % PADDING_MULTIPLE;
    if (n + pad > mtu) {
        Py_ssize_t last = (mtu > 0 && n > mtu) ? n % mtu : n;
        Py_ssize_t padded = (last + PADDING_MULTIPLE - 1) / PADDING_MULTIPLE * PADDING_MULTIPLE;
        if (mtu > 0 && padded > mtu) padded = mtu;
        pad = padded > last ? padded - last : 0;
    }
    return n + pad;
}

static int check_key(Py_buffer *key) {
    if (key->len != KEY_SIZE) {
        PyErr_Format(PyExc_ValueError, "key must be %d bytes, not %zd", KEY_SIZE, key->len);
        return -1;
    }
    return 0;
}

/* A tuple of bytes objects (a new reference), or NULL with TypeError. */
static PyObject *bytes_tuple(PyObject *seq, const char *what) {
    PyObject *t = PySequence_Tuple(seq);
    if (t == NULL) return NULL;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(t); i++) {
        if (!PyBytes_Check(PyTuple_GET_ITEM(t, i))) {
            PyErr_Format(PyExc_TypeError, "%s must be bytes", what);
            Py_DECREF(t);
            return NULL;
        }
    }
    return t;
}

static PyObject *fp_seal(PyObject *self, PyObject *args) {
    Py_buffer key;
    unsigned long remote;
    unsigned long long counter;
    PyObject *seq, *packets = NULL, *out = NULL;
    long mtu;
    uint8_t k[KEY_SIZE];
    int failed = 0;

    if (!PyArg_ParseTuple(args, "y*kKOl:seal", &key, &remote, &counter, &seq, &mtu))
        return NULL;
    if (check_key(&key) < 0) goto done;
    if (remote > 0xFFFFFFFFUL) {
        PyErr_SetString(PyExc_ValueError, "receiver index out of range");
        goto done;
    }
    memcpy(k, key.buf, KEY_SIZE);
    if ((packets = bytes_tuple(seq, "packets")) == NULL) goto done;
    Py_ssize_t n = PyTuple_GET_SIZE(packets);
    if (n && counter > UINT64_MAX - (uint64_t)(n - 1)) {
        PyErr_SetString(PyExc_OverflowError, "counter out of range");
        goto done;
    }
    if ((out = PyList_New(n)) == NULL) goto done;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *p = PyTuple_GET_ITEM(packets, i);
        Py_ssize_t len = PyBytes_GET_SIZE(p), padded = padded_length(len, mtu);
        PyObject *d = PyBytes_FromStringAndSize(NULL, HEADER_SIZE + padded + TAG_SIZE);
        if (d == NULL) { Py_CLEAR(out); goto done; }
        uint8_t *w = (uint8_t *)PyBytes_AS_STRING(d);
        put_le32(w, MESSAGE_TRANSPORT);
        put_le32(w + 4, (uint32_t)remote);
        put_le64(w + 8, counter + (uint64_t)i);
        memcpy(w + HEADER_SIZE, PyBytes_AS_STRING(p), len);
        memset(w + HEADER_SIZE + len, 0, padded - len);
        PyList_SET_ITEM(out, i, d);
    }
    Py_BEGIN_ALLOW_THREADS
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    if (ctx == NULL || !EVP_EncryptInit_ex(ctx, aead, NULL, k, NULL)) failed = 1;
    for (Py_ssize_t i = 0; i < n && !failed; i++) {
        uint8_t *w = (uint8_t *)PyBytes_AS_STRING(PyList_GET_ITEM(out, i));
        int plen = (int)(PyBytes_GET_SIZE(PyList_GET_ITEM(out, i)) - HEADER_SIZE - TAG_SIZE);
        uint8_t nonce[NONCE_SIZE] = {0};
        int len1 = 0, len2 = 0;
        memcpy(nonce + 4, w + 8, 8);
        if (!EVP_EncryptInit_ex(ctx, NULL, NULL, NULL, nonce)
                || !EVP_EncryptUpdate(ctx, w + HEADER_SIZE, &len1, w + HEADER_SIZE, plen)
                || !EVP_EncryptFinal_ex(ctx, w + HEADER_SIZE + len1, &len2)
                || !EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, TAG_SIZE,
                                        w + HEADER_SIZE + plen))
            failed = 1;
    }
    EVP_CIPHER_CTX_free(ctx);
    Py_END_ALLOW_THREADS
    if (failed) {
        Py_CLEAR(out);
        PyErr_SetString(PyExc_RuntimeError, "libcrypto refused ChaCha20-Poly1305");
    }
done:
    OPENSSL_cleanse(k, sizeof k);
    Py_XDECREF(packets);
    PyBuffer_Release(&key);
    return out;
}

static PyObject *fp_open(PyObject *self, PyObject *args) {
    Py_buffer key;
    PyObject *seq, *msgs = NULL, *out = NULL;
    uint8_t k[KEY_SIZE];
    char *ok = NULL;
    int failed = 0;

    if (!PyArg_ParseTuple(args, "y*O:open", &key, &seq)) return NULL;
    if (check_key(&key) < 0) goto done;
    memcpy(k, key.buf, KEY_SIZE);
    if ((msgs = bytes_tuple(seq, "datagrams")) == NULL) goto done;
    Py_ssize_t n = PyTuple_GET_SIZE(msgs);
    if ((ok = PyMem_Calloc(n ? n : 1, 1)) == NULL) { PyErr_NoMemory(); goto done; }
    if ((out = PyList_New(n)) == NULL) goto done;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t len = PyBytes_GET_SIZE(PyTuple_GET_ITEM(msgs, i));
        PyObject *d;
        if (len < HEADER_SIZE + TAG_SIZE || len - HEADER_SIZE - TAG_SIZE > INT_MAX) {
            d = Py_None;  /* too short to hold a tag: never authentic */
            Py_INCREF(d);
        } else if ((d = PyBytes_FromStringAndSize(NULL, len - HEADER_SIZE - TAG_SIZE)) == NULL) {
            Py_CLEAR(out);
            goto done;
        }
        PyList_SET_ITEM(out, i, d);
    }
    Py_BEGIN_ALLOW_THREADS
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    if (ctx == NULL || !EVP_DecryptInit_ex(ctx, aead, NULL, k, NULL)) failed = 1;
    for (Py_ssize_t i = 0; i < n && !failed; i++) {
        PyObject *d = PyList_GET_ITEM(out, i);
        if (d == Py_None) continue;
        const uint8_t *m = (const uint8_t *)PyBytes_AS_STRING(PyTuple_GET_ITEM(msgs, i));
        int clen = (int)PyBytes_GET_SIZE(d), len1 = 0, len2 = 0;
        uint8_t nonce[NONCE_SIZE] = {0}, tag[TAG_SIZE];
        memcpy(nonce + 4, m + 8, 8);
        memcpy(tag, m + HEADER_SIZE + clen, TAG_SIZE);
        /* An empty plaintext is the shared empty bytes object: nothing is written to it. */
        uint8_t *w = clen ? (uint8_t *)PyBytes_AS_STRING(d) : NULL;
        if (!EVP_DecryptInit_ex(ctx, NULL, NULL, NULL, nonce)
                || (clen && !EVP_DecryptUpdate(ctx, w, &len1, m + HEADER_SIZE, clen))
                || !EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, TAG_SIZE, tag))
            failed = 1;
        else {
            uint8_t sink[16];
            ok[i] = EVP_DecryptFinal_ex(ctx, clen ? w + len1 : sink, &len2) > 0;
        }
    }
    EVP_CIPHER_CTX_free(ctx);
    Py_END_ALLOW_THREADS
    if (failed) {
        Py_CLEAR(out);
        PyErr_SetString(PyExc_RuntimeError, "libcrypto refused ChaCha20-Poly1305");
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (!ok[i] && PyList_GET_ITEM(out, i) != Py_None) {
            Py_DECREF(PyList_GET_ITEM(out, i));
            Py_INCREF(Py_None);
            PyList_SET_ITEM(out, i, Py_None);
        }
    }
done:
    OPENSSL_cleanse(k, sizeof k);
    PyMem_Free(ok);
    Py_XDECREF(msgs);
    PyBuffer_Release(&key);
    return out;
}

static PyObject *malformed(const char *why) {
    PyErr_SetString(PyExc_ValueError, why);
    return NULL;
}

/* Fill in the checksum at data[start + offset] over data[start:n] (NEEDS_CSUM). */
static void complete_csum(uint8_t *data, size_t n, size_t start, size_t offset) {
    put_be16(data + start + offset, (uint16_t)~fold(sum16(data + start, n - start, 0)));
}

static PyObject *fp_split(PyObject *self, PyObject *args) {
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

static PyObject *fp_csum_ok(PyObject *self, PyObject *args) {
    Py_buffer buf;
    Py_ssize_t ip_len;
    if (!PyArg_ParseTuple(args, "y*n:csum_ok", &buf, &ip_len)) return NULL;
    const uint8_t *p = buf.buf;
    size_t n = (size_t)buf.len;
    int ok;
    if ((ip_len != 20 && ip_len != 40) || n < (size_t)ip_len + 20) ok = 0;
    else if (ip_len == 20)
        ok = fold(sum16(p, 20, 0)) == 0xFFFF
             && fold(sum16(p + 20, n - 20, sum16(p + 12, 8, 6 + n - 20))) == 0xFFFF;
    else
        ok = fold(sum16(p + 40, n - 40, sum16(p + 8, 32, 6 + n - 40))) == 0xFFFF;
    PyBuffer_Release(&buf);
    return PyBool_FromLong(ok);
}

static PyMethodDef methods[] = {
    {"seal", fp_seal, METH_VARARGS,
     "seal(key, receiver_index, counter, packets, mtu) -> list of transport messages"},
    {"open", fp_open, METH_VARARGS,
     "open(key, messages) -> list of plaintexts, None where the tag does not verify"},
    {"split", fp_split, METH_VARARGS,
     "split(tun_read) -> IP packets of one TUN read with its virtio-net header"},
    {"csum_ok", fp_csum_ok, METH_VARARGS,
     "csum_ok(packet, ip_len) -> whether the IPv4 header and TCP checksums verify"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "wgpy._fastpath",
    "The optional compiled batch path; see wgpy/fastpath.py.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__fastpath(void) {
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
    aead = EVP_CIPHER_fetch(NULL, "ChaCha20-Poly1305", NULL);  /* fetched once, not per call */
#else
    aead = (EVP_CIPHER *)EVP_chacha20_poly1305();
#endif
    if (aead == NULL) {
        PyErr_SetString(PyExc_ImportError, "libcrypto has no ChaCha20-Poly1305");
        return NULL;
    }
    return PyModule_Create(&module);
}
