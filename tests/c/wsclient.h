/*
 * A minimal blocking websocket client for the C tests: the opening
 * handshake, masked frames out, unmasked frames in, with a receive timeout.
 * Enough to talk to groupcast over loopback; not a general client.
 */
#ifndef GROUPCAST_TEST_WSCLIENT_H
#define GROUPCAST_TEST_WSCLIENT_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define WS_TEXT 0x1
#define WS_BINARY 0x2
#define WS_CLOSE 0x8

typedef struct ws_frame {
    int opcode;          /* WS_TEXT, WS_BINARY, WS_CLOSE; -1 on error/timeout */
    size_t len;          /* payload length */
    unsigned char *data; /* payload + NUL, malloc'd; free with ws_frame_free */
    int close_code;      /* for WS_CLOSE: the code, or -1 */
} ws_frame;

static inline void ws_frame_free(ws_frame *f) {
    free(f->data);
    f->data = NULL;
}

static inline int ws_write_all(int fd, const void *buf, size_t len) {
    const char *p = buf;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n <= 0) return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static inline int ws_read_all(int fd, void *buf, size_t len) {
    char *p = buf;
    while (len > 0) {
        ssize_t n = recv(fd, p, len, 0);
        if (n <= 0) return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* A TCP connection to 127.0.0.1:port whose reads time out after
 * `timeout_ms`, or -1. */
static inline int ws_tcp_connect(uint16_t port, int timeout_ms) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Connects to 127.0.0.1:port and performs the handshake for `path` (which
 * may carry a query). Returns the socket, or -1. When the server refuses
 * the upgrade, returns -1 too. Reads time out after `timeout_ms`. */
static inline int ws_connect(uint16_t port, const char *path, int timeout_ms) {
    int fd = ws_tcp_connect(port, timeout_ms);
    if (fd < 0) return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    char request[512];
    int n = snprintf(request, sizeof request,
                     "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%u\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n",
                     path, (unsigned)port);
    if (ws_write_all(fd, request, (size_t)n) != 0) {
        close(fd);
        return -1;
    }
    /* Read the response headers byte by byte so that no frame is consumed. */
    char response[2048];
    size_t got = 0;
    while (got + 1 < sizeof response) {
        if (recv(fd, response + got, 1, 0) != 1) {
            close(fd);
            return -1;
        }
        got++;
        if (got >= 4 && memcmp(response + got - 4, "\r\n\r\n", 4) == 0) break;
    }
    response[got] = '\0';
    if (strncmp(response, "HTTP/1.1 101", 12) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Sends one masked frame. */
static inline int ws_send_frame(int fd, int opcode, const void *payload, size_t len) {
    unsigned char header[14];
    size_t h = 0;
    header[h++] = (unsigned char)(0x80 | opcode);
    if (len < 126) {
        header[h++] = (unsigned char)(0x80 | len);
    } else if (len <= 0xffff) {
        header[h++] = 0x80 | 126;
        header[h++] = (unsigned char)(len >> 8);
        header[h++] = (unsigned char)len;
    } else {
        header[h++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--) header[h++] = (unsigned char)((uint64_t)len >> (8 * i));
    }
    const unsigned char mask[4] = {0x12, 0x34, 0x56, 0x78};
    memcpy(header + h, mask, 4);
    h += 4;
    unsigned char *masked = malloc(len + 1);
    if (!masked) return -1;
    for (size_t i = 0; i < len; i++) masked[i] = ((const unsigned char *)payload)[i] ^ mask[i % 4];
    int rc = ws_write_all(fd, header, h) || ws_write_all(fd, masked, len);
    free(masked);
    return rc ? -1 : 0;
}

static inline int ws_send_text(int fd, const char *text) {
    return ws_send_frame(fd, WS_TEXT, text, strlen(text));
}

/* Sends a close frame with `code` and no reason. */
static inline int ws_send_close(int fd, int code) {
    unsigned char body[2] = {(unsigned char)(code >> 8), (unsigned char)code};
    return ws_send_frame(fd, WS_CLOSE, body, 2);
}

/* Receives the next data or close frame (pings are skipped). On timeout or
 * error, opcode is -1. */
static inline ws_frame ws_recv(int fd) {
    ws_frame f = {-1, 0, NULL, -1};
    for (;;) {
        unsigned char h[2];
        if (ws_read_all(fd, h, 2) != 0) return f;
        int opcode = h[0] & 0x0f;
        uint64_t len = h[1] & 0x7f;
        if (len == 126) {
            unsigned char e[2];
            if (ws_read_all(fd, e, 2) != 0) return f;
            len = ((uint64_t)e[0] << 8) | e[1];
        } else if (len == 127) {
            unsigned char e[8];
            if (ws_read_all(fd, e, 8) != 0) return f;
            len = 0;
            for (int i = 0; i < 8; i++) len = (len << 8) | e[i];
        }
        if (len > (64u << 20)) return f;
        unsigned char *data = malloc((size_t)len + 1);
        if (!data) return f;
        if (len > 0 && ws_read_all(fd, data, (size_t)len) != 0) {
            free(data);
            return f;
        }
        data[len] = '\0';
        if (opcode == 0x9 || opcode == 0xA) { /* ping/pong: skip */
            free(data);
            continue;
        }
        f.opcode = opcode;
        f.len = (size_t)len;
        f.data = data;
        if (opcode == WS_CLOSE) f.close_code = len >= 2 ? (data[0] << 8) | data[1] : 1005;
        return f;
    }
}

/* Receives one frame and checks it is the text `expected`. */
static inline int ws_expect_text(int fd, const char *expected) {
    ws_frame f = ws_recv(fd);
    int ok = f.opcode == WS_TEXT && f.len == strlen(expected) && memcmp(f.data, expected, f.len) == 0;
    if (!ok) {
        fprintf(stderr, "expected text \"%s\", got opcode %d \"%s\"\n", expected, f.opcode,
                f.data ? (char *)f.data : "");
    }
    ws_frame_free(&f);
    return ok;
}

/* Sends the upgrade request for `path` with `extra` header lines (each
 * ending in "\r\n"; "" for none) and returns the socket without waiting for
 * the answer (a host that approves connections answers later), or -1. */
static inline int ws_request(uint16_t port, const char *path, const char *extra, int timeout_ms) {
    int fd = ws_tcp_connect(port, timeout_ms);
    if (fd < 0) return -1;
    char request[1024];
    int n = snprintf(request, sizeof request,
                     "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%u\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n%s\r\n",
                     path, (unsigned)port, extra);
    if (n < 0 || (size_t)n >= sizeof request || ws_write_all(fd, request, (size_t)n) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Reads what the server sends until it closes (at most size - 1 bytes),
 * NUL-terminated into `out`; returns the HTTP status of the response, or
 * -1 when it is not one. For refused upgrades. */
static inline int ws_read_refusal(int fd, char *out, size_t size) {
    size_t got = 0;
    ssize_t n;
    while (got + 1 < size && (n = recv(fd, out + got, size - 1 - got, 0)) > 0) got += (size_t)n;
    out[got] = '\0';
    int status = -1;
    if (sscanf(out, "HTTP/1.1 %d ", &status) != 1) return -1;
    return status;
}

#endif
