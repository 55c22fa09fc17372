/* wgpy._fastpath: what its two files share (see _fastpath.c for the theory of operation).
   Sizes are the protocol's (wgpy/constants.py); tests/test_fastpath.py checks the module
   against the pure-Python twins. */
#ifndef WGPY_FASTPATH_H
#define WGPY_FASTPATH_H

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

/* _fastpath.c */
PyObject *wgfp_bytes_tuple(PyObject *seq, const char *what);

/* _fastpath_offload.c */
PyObject *wgfp_split(PyObject *self, PyObject *args);
PyObject *wgfp_runs(PyObject *self, PyObject *args);
PyObject *wgfp_coalesce(PyObject *self, PyObject *arg);

#endif
