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
- runs(): one UDP receive (GRO: datagrams of one source cut at the segment size) -> runs
  of transport data messages with one receiver index, other datagrams alone.
- split(): one TUN read with its virtio-net header -> IP packets. A GSO_TCPV4/TCPV6
  super-packet (TUNSETOFFLOAD TSO) becomes MSS-sized segments with their headers fixed as
  the kernel's tcp_gso_segment fixes them (IPv4 total length, ID + i and header checksum;
  IPv6 payload length; TCP sequence + i * MSS, FIN and PSH on the last segment only, CWR
  on the first only; full TCP checksum). A packet with NEEDS_CSUM gets its checksum
  completed at csum_start + csum_offset (the field holds the pseudo-header sum).
  wireguard-go does the same in tun/offload_linux.go (gsoSplit, gsoNoneChecksum).
- coalesce(): decrypted IP packets -> TUN writes, consecutive TCP segments of one flow
  merged into one GSO super-packet behind a virtio-net header, exactly as
  wgpy.tunoffload.py_coalesce merges them (its docstring has the rules: the kernel's
  tcp_gro_receive, wireguard-go's tcpPacketsCanCoalesce); each segment's IPv4 header and
  TCP checksums verify before it joins, since the kernel trusts NEEDS_CSUM super-packets.

The AEAD is OpenSSL's libcrypto (EVP ChaCha20-Poly1305), the library `cryptography` wraps:
no crypto is written here. Inputs are bytes objects (immutable, kept alive by a tuple
taken before the GIL is released); outputs are new bytes objects, allocated while the GIL
is held and filled after it is released. Bad input is a ValueError or TypeError, never a
crash; the pure-Python twins in wgpy/fastpath.py behave the same, and
tests/test_fastpath.py feeds both the same random batches.

This file has the AEAD batches (seal, open), the replay window and receive/accept, and
the module; _fastpath_offload.c the offloads (split, runs, coalesce); _fastpath.h what
they share.
*/
#include "_fastpath.h"

static EVP_CIPHER *aead;

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
PyObject *wgfp_bytes_tuple(PyObject *seq, const char *what) {
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
    if ((packets = wgfp_bytes_tuple(seq, "packets")) == NULL) goto done;
    Py_ssize_t n = PyTuple_GET_SIZE(packets);
    if (n && counter > UINT64_MAX - (uint64_t)(n - 1)) {
        PyErr_SetString(PyExc_OverflowError, "counter out of range");
        goto done;
    }
    if ((out = PyList_New(n)) == NULL) goto done;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *p = PyTuple_GET_ITEM(packets, i);
        Py_ssize_t len = PyBytes_GET_SIZE(p), padded = padded_length(len, mtu);
        if (padded > INT_MAX - HEADER_SIZE - TAG_SIZE) {
            PyErr_SetString(PyExc_ValueError, "packet too long");
            Py_CLEAR(out);
            goto done;
        }
        PyObject *d = PyBytes_FromStringAndSize(NULL, HEADER_SIZE + padded + TAG_SIZE);
        if (d == NULL) { Py_CLEAR(out); goto done; }
        uint8_t *w = (uint8_t *)PyBytes_AS_STRING(d);
        put_le32(w, MESSAGE_TRANSPORT);
        put_le32(w + 4, (uint32_t)remote);
        put_le64(w + 8, counter + (uint64_t)i);
        PyList_SET_ITEM(out, i, d);
    }
    /* Encrypted straight from the packet into the message, then the zero padding: no copy,
       and no interpreter lock held. */
    static const uint8_t zeros[PADDING_MULTIPLE];
    Py_BEGIN_ALLOW_THREADS
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    if (ctx == NULL || !EVP_EncryptInit_ex(ctx, aead, NULL, k, NULL)) failed = 1;
    for (Py_ssize_t i = 0; i < n && !failed; i++) {
        PyObject *p = PyTuple_GET_ITEM(packets, i);
        uint8_t *w = (uint8_t *)PyBytes_AS_STRING(PyList_GET_ITEM(out, i));
        int plen = (int)(PyBytes_GET_SIZE(PyList_GET_ITEM(out, i)) - HEADER_SIZE - TAG_SIZE);
        int len = (int)PyBytes_GET_SIZE(p), pad = plen - len;
        uint8_t nonce[NONCE_SIZE] = {0};
        int len1 = 0, len2 = 0, len3 = 0;
        memcpy(nonce + 4, w + 8, 8);
        if (!EVP_EncryptInit_ex(ctx, NULL, NULL, NULL, nonce)
                || (len && !EVP_EncryptUpdate(ctx, w + HEADER_SIZE, &len1,
                                              (const uint8_t *)PyBytes_AS_STRING(p), len))
                || (pad && !EVP_EncryptUpdate(ctx, w + HEADER_SIZE + len1, &len2, zeros, pad))
                || !EVP_EncryptFinal_ex(ctx, w + HEADER_SIZE + len1 + len2, &len3)
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
    if ((msgs = wgfp_bytes_tuple(seq, "datagrams")) == NULL) goto done;
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

/* --- Replay: the RFC 6479 window (wgpy.replay.ReplayFilter), for receive() --- */

/* wgpy.constants COUNTER_BITS_TOTAL, COUNTER_REDUNDANT_BITS, COUNTER_WINDOW_SIZE; the
   module exports them and tests/test_fastpath.py checks they are equal. */
#define COUNTER_BITS_TOTAL 8192
#define COUNTER_REDUNDANT_BITS 64
#define COUNTER_WINDOW_SIZE (COUNTER_BITS_TOTAL - COUNTER_REDUNDANT_BITS)
#define RING_WORDS (COUNTER_BITS_TOTAL / 64)

typedef struct {
    PyObject_HEAD
    uint64_t greatest;  /* greatest accepted counter + 1; 0 when none yet */
    uint64_t ring[RING_WORDS];
} ReplayObject;

static int replay_validate(ReplayObject *r, uint64_t counter, uint64_t limit) {
    if (counter >= limit || r->greatest > limit) return 0;
    uint64_t their = counter + 1, greatest = r->greatest, index = their >> 6;
    if (their + COUNTER_WINDOW_SIZE < greatest) return 0;  /* fell out of the window */
    if (their > greatest) {
        uint64_t current = greatest >> 6, skipped = index - current;
        if (skipped >= RING_WORDS) memset(r->ring, 0, sizeof r->ring);
        else for (uint64_t i = current + 1; i <= index; i++) r->ring[i % RING_WORDS] = 0;
        r->greatest = their;
    }
    uint64_t bit = 1ULL << (their & 63), *word = &r->ring[index % RING_WORDS];
    if (*word & bit) return 0;  /* duplicate */
    *word |= bit;
    return 1;
}

static PyObject *replay_new(PyTypeObject *type, PyObject *args, PyObject *kw) {
    if (PyTuple_GET_SIZE(args) || (kw != NULL && PyDict_GET_SIZE(kw))) {
        PyErr_SetString(PyExc_TypeError, "Replay() takes no arguments");
        return NULL;
    }
    return type->tp_alloc(type, 0);  /* zeroed: nothing seen */
}

/* A counter or limit: an int in 0 .. 2**64 - 1 (OverflowError otherwise, never wrapped). */
static int u64_arg(PyObject *o, void *out) {
    unsigned long long v = PyLong_AsUnsignedLongLong(o);
    if (v == (unsigned long long)-1 && PyErr_Occurred()) return 0;
    *(uint64_t *)out = v;
    return 1;
}

static PyObject *replay_py_validate(PyObject *self, PyObject *args) {
    uint64_t counter, limit;
    if (!PyArg_ParseTuple(args, "O&O&:validate", u64_arg, &counter, u64_arg, &limit))
        return NULL;
    return PyBool_FromLong(replay_validate((ReplayObject *)self, counter, limit));
}

static PyObject *replay_exhausted(PyObject *self, PyObject *args) {
    uint64_t limit;
    if (!PyArg_ParseTuple(args, "O&:exhausted", u64_arg, &limit)) return NULL;
    return PyBool_FromLong(((ReplayObject *)self)->greatest >= limit);
}

static PyObject *replay_reset(PyObject *self, PyObject *unused) {
    ReplayObject *r = (ReplayObject *)self;
    r->greatest = 0;
    memset(r->ring, 0, sizeof r->ring);
    Py_RETURN_NONE;
}

static PyMethodDef replay_methods[] = {
    {"validate", replay_py_validate, METH_VARARGS,
     "validate(counter, limit) -> accept counter and mark it seen, or False"},
    {"exhausted", replay_exhausted, METH_VARARGS,
     "exhausted(limit) -> whether the greatest accepted counter + 1 reached limit"},
    {"reset", replay_reset, METH_NOARGS, "forget every counter seen"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject ReplayType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "wgpy._fastpath.Replay",
    .tp_basicsize = sizeof(ReplayObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The replay window of one receiving keypair (wgpy.replay.ReplayFilter's twin).",
    .tp_new = replay_new,
    .tp_methods = replay_methods,
};

/* --- receive: a run of transport data under one keypair (Peer.consume_data_batch) --- */

/* The kernel's order per message (receive.c): decrypt, then the replay check
   (counter_validate), then the inner packet: its IP length (the padding trimmed) and
   whether its source address is one of the peer's allowed IPs. `allowed(source)` is asked
   only when a packet's source differs from the last one found allowed: a stream asks once.
   accept_run() does all after decryption: `plains[i]` is the plaintext of `msgs[i]`, None
   where it did not authenticate. */
static PyObject *accept_run(PyObject *msgs, PyObject *plains, ReplayObject *replay,
                            uint64_t limit, PyObject *allowed) {
    PyObject *packets = PyList_New(0), *last_source = NULL, *result = NULL;
    Py_ssize_t n_failed = 0, n_replayed = 0, n_invalid = 0, n_disallowed = 0;
    Py_ssize_t authenticated = 0, received = 0;
    int data_received = 0;
    if (packets == NULL) return NULL;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(msgs); i++) {
        PyObject *m = PyTuple_GET_ITEM(msgs, i), *plain = PyList_GET_ITEM(plains, i);
        if (plain == Py_None || PyBytes_GET_SIZE(m) < HEADER_SIZE + TAG_SIZE) {
            n_failed++;
            continue;
        }
        const uint8_t *h = (const uint8_t *)PyBytes_AS_STRING(m);
        uint64_t counter = 0;
        for (int b = 7; b >= 0; b--) counter = counter << 8 | h[8 + b];
        if (!replay_validate(replay, counter, limit)) { n_replayed++; continue; }
        authenticated++;
        received += PyBytes_GET_SIZE(m);
        Py_ssize_t plen = PyBytes_GET_SIZE(plain), length = -1;
        if (plen == 0) continue;  /* keepalive */
        data_received = 1;
        const uint8_t *p = (const uint8_t *)PyBytes_AS_STRING(plain);
        /* the IP packet's own length from its header (fastpath.py_accept) */
        if ((p[0] >> 4) == 4 && plen >= 20) {
            length = get_be16(p + 2);
            if (length < 20 || length > plen) length = -1;
        } else if ((p[0] >> 4) == 6 && plen >= 40) {
            length = (Py_ssize_t)get_be16(p + 4) + 40;
            if (length > plen) length = -1;
        }
        if (length < 0) { n_invalid++; continue; }
        const char *src = (const char *)((p[0] >> 4) == 4 ? p + 12 : p + 8);
        Py_ssize_t src_len = (p[0] >> 4) == 4 ? 4 : 16;
        if (last_source == NULL || PyBytes_GET_SIZE(last_source) != src_len
                || memcmp(PyBytes_AS_STRING(last_source), src, src_len)) {
            PyObject *source = PyBytes_FromStringAndSize(src, src_len);
            if (source == NULL) goto done;
            PyObject *verdict = PyObject_CallOneArg(allowed, source);
            int yes = verdict == NULL ? -1 : PyObject_IsTrue(verdict);
            Py_XDECREF(verdict);
            if (yes <= 0) {
                Py_DECREF(source);
                if (yes < 0) goto done;
                n_disallowed++;
                continue;
            }
            Py_XSETREF(last_source, source);
        }
        if (length < plen) {  /* the padding goes: a new object of the inner length */
            PyObject *trimmed = PyBytes_FromStringAndSize((const char *)p, length);
            if (trimmed == NULL) goto done;
            int r = PyList_Append(packets, trimmed);
            Py_DECREF(trimmed);
            if (r < 0) goto done;
        } else if (PyList_Append(packets, plain) < 0) goto done;
    }
    result = Py_BuildValue("(OnnN(nnnn))", packets, authenticated, received,
                           PyBool_FromLong(data_received), n_failed, n_replayed, n_invalid,
                           n_disallowed);
done:
    Py_DECREF(packets);
    Py_XDECREF(last_source);
    return result;
}

static PyObject *fp_accept(PyObject *self, PyObject *args) {
    PyObject *plains_arg, *seq, *replay, *allowed, *msgs = NULL, *plains = NULL, *result = NULL;
    uint64_t limit;
    if (!PyArg_ParseTuple(args, "OOO!O&O:accept", &plains_arg, &seq, &ReplayType, &replay,
                          u64_arg, &limit, &allowed))
        return NULL;
    if ((msgs = wgfp_bytes_tuple(seq, "datagrams")) == NULL) return NULL;
    if ((plains = PySequence_List(plains_arg)) == NULL) goto done;
    if (PyList_GET_SIZE(plains) != PyTuple_GET_SIZE(msgs)) {
        PyErr_SetString(PyExc_ValueError, "one plaintext (or None) for each datagram");
        goto done;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(plains); i++) {
        PyObject *p = PyList_GET_ITEM(plains, i);
        if (p != Py_None && !PyBytes_Check(p)) {
            PyErr_SetString(PyExc_TypeError, "plaintexts must be bytes or None");
            goto done;
        }
    }
    result = accept_run(msgs, plains, (ReplayObject *)replay, limit, allowed);
done:
    Py_DECREF(msgs);
    Py_XDECREF(plains);
    return result;
}

static PyObject *fp_receive(PyObject *self, PyObject *args) {
    Py_buffer key;
    PyObject *seq, *replay, *allowed, *msgs = NULL, *plains = NULL, *result = NULL;
    uint64_t limit;
    if (!PyArg_ParseTuple(args, "y*OO!O&O:receive", &key, &seq, &ReplayType, &replay,
                          u64_arg, &limit, &allowed))
        return NULL;
    PyObject *open_args = Py_BuildValue("(y#O)", key.buf, key.len, seq);
    if (open_args == NULL) goto done;
    plains = fp_open(self, open_args);
    Py_DECREF(open_args);
    if (plains == NULL || (msgs = wgfp_bytes_tuple(seq, "datagrams")) == NULL) goto done;
    result = accept_run(msgs, plains, (ReplayObject *)replay, limit, allowed);
done:
    Py_XDECREF(msgs);
    Py_XDECREF(plains);
    PyBuffer_Release(&key);
    return result;
}

static PyMethodDef methods[] = {
    {"seal", fp_seal, METH_VARARGS,
     "seal(key, receiver_index, counter, packets, mtu) -> list of transport messages"},
    {"open", fp_open, METH_VARARGS,
     "open(key, messages) -> list of plaintexts, None where the tag does not verify"},
    {"split", wgfp_split, METH_VARARGS,
     "split(tun_read) -> IP packets of one TUN read with its virtio-net header"},
    {"runs", wgfp_runs, METH_VARARGS,
     "runs(received, segment) -> [(receiver index, [datagrams]) or (-1, [datagram])]"},
    {"accept", fp_accept, METH_VARARGS,
     "accept(plaintexts, messages, replay, limit, allowed) -> receive's result, for "
     "messages already opened (plaintext None where the tag failed)"},
    {"receive", fp_receive, METH_VARARGS,
     "receive(key, messages, replay, limit, allowed) -> (packets, authenticated, "
     "received bytes, data received, (decryption failed, replayed, invalid, disallowed))"},
    {"coalesce", wgfp_coalesce, METH_O,
     "coalesce(packets) -> the TUN writes (virtio-net header included) that deliver them"},
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
    if (PyType_Ready(&ReplayType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    Py_INCREF(&ReplayType);
    if (PyModule_AddObject(m, "Replay", (PyObject *)&ReplayType) < 0
            || PyModule_AddIntConstant(m, "COUNTER_BITS_TOTAL", COUNTER_BITS_TOTAL) < 0
            || PyModule_AddIntConstant(m, "COUNTER_WINDOW_SIZE", COUNTER_WINDOW_SIZE) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
