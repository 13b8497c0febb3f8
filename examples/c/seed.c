/*
 * The seed (a Workerman channel + websocket group example) as a C host of
 * groupcast, with callbacks. Built-in commands are off: this program
 * implements the client protocol itself,
 *
 *   {"cmd":"add_group","group_id":"123"}
 *   {"cmd":"leave_group","group_id":"123"}
 *   {"cmd":"send_to_group","group_id":"123","message":"..."}
 *
 * in on_message, with the join / leave / send_to_group actions.
 *
 *   seed [--listen HOST:PORT] [--channel-listen HOST:PORT]
 *
 * Defaults are the seed's: websocket 0.0.0.0:1234, channel 127.0.0.1:2206.
 * Prints "listening websocket=ADDR channel=ADDR" once listening, runs until
 * SIGINT or SIGTERM, then stops cleanly and exits 0.
 *
 * Build: cc -Iinclude examples/c/seed.c -Ltarget/release -lgroupcast \
 *          -Wl,-rpath,$PWD/target/release -o seed
 */
#define _POSIX_C_SOURCE 200809L /* sigwait, pthread_sigmask */
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "groupcast.h"

/* ---- A minimal JSON reader: one flat object, the three fields we use. */

typedef struct field {
    bool present;
    bool is_string;
    char *text; /* decoded string, or the raw JSON of another value */
    size_t len;
} field;

typedef struct command {
    field cmd, group_id, message;
} command;

static void command_free(command *c) {
    free(c->cmd.text);
    free(c->group_id.text);
    free(c->message.text);
}

static const char *skip_ws(const char *p, const char *end) {
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
    return p;
}

static size_t put_utf8(char *out, unsigned cp) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

static bool hex4(const char *p, const char *end, unsigned *out) {
    if (end - p < 4) return false;
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
        else return false;
    }
    *out = v;
    return true;
}

/* Parses a JSON string at p (on the opening quote). Returns the position
 * after it, or NULL; the decoded text goes to *out (malloc'd) when out. */
static const char *parse_string(const char *p, const char *end, char **out, size_t *out_len) {
    char *buf = out ? malloc((size_t)(end - p) + 1) : NULL;
    size_t n = 0;
    if (out && !buf) return NULL;
    for (p++; p < end; p++) {
        char c = *p;
        if (c == '"') {
            if (out) {
                buf[n] = '\0';
                *out = buf;
                *out_len = n;
            }
            return p + 1;
        }
        if ((unsigned char)c < 0x20) break;
        if (c != '\\') {
            if (buf) buf[n++] = c;
            continue;
        }
        if (++p >= end) break;
        char e = *p;
        char simple = e == 'n' ? '\n' : e == 't' ? '\t' : e == 'r' ? '\r' : e == 'b' ? '\b'
                    : e == 'f' ? '\f' : (e == '"' || e == '\\' || e == '/') ? e : 0;
        if (simple) {
            if (buf) buf[n++] = simple;
            continue;
        }
        unsigned cp;
        if (e != 'u' || !hex4(p + 1, end, &cp)) break;
        p += 4;
        if (cp >= 0xD800 && cp < 0xDC00) { /* a surrogate pair */
            unsigned low;
            if (end - p < 7 || p[1] != '\\' || p[2] != 'u' || !hex4(p + 3, end, &low) ||
                low < 0xDC00 || low > 0xDFFF)
                break;
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
            p += 6;
        } else if (cp >= 0xDC00 && cp < 0xE000) {
            break;
        }
        if (buf) n += put_utf8(buf + n, cp);
    }
    free(buf);
    return NULL;
}

/* Skips any JSON value; returns the position after it, or NULL. */
static const char *skip_value(const char *p, const char *end) {
    p = skip_ws(p, end);
    if (p >= end) return NULL;
    if (*p == '"') return parse_string(p, end, NULL, NULL);
    if (*p == '{' || *p == '[') {
        int depth = 0;
        while (p < end) {
            if (*p == '"') {
                p = parse_string(p, end, NULL, NULL);
                if (!p) return NULL;
                continue;
            }
            if (*p == '{' || *p == '[') depth++;
            if (*p == '}' || *p == ']') {
                if (--depth == 0) return p + 1;
            }
            p++;
        }
        return NULL;
    }
    const char *start = p;
    while (p < end && *p != ',' && *p != '}' && *p != ']' && *p != ' ' && *p != '\n' &&
           *p != '\r' && *p != '\t')
        p++;
    return p > start ? p : NULL;
}

/* Reads {"cmd":..., "group_id":..., "message":...}; other keys are ignored.
 * Returns false when the text is not a JSON object. */
static bool parse_command(const char *text, size_t len, command *c) {
    const char *p = skip_ws(text, text + len), *end = text + len;
    memset(c, 0, sizeof *c);
    if (p >= end || *p != '{') return false;
    p = skip_ws(p + 1, end);
    if (p < end && *p == '}') return skip_ws(p + 1, end) == end;
    for (;;) {
        char *key = NULL;
        size_t key_len = 0;
        if (p >= end || *p != '"' || !(p = parse_string(p, end, &key, &key_len))) return false;
        p = skip_ws(p, end);
        if (p >= end || *p != ':') {
            free(key);
            return false;
        }
        p = skip_ws(p + 1, end);
        field *f = strcmp(key, "cmd") == 0 ? &c->cmd
                 : strcmp(key, "group_id") == 0 ? &c->group_id
                 : strcmp(key, "message") == 0 ? &c->message : NULL;
        free(key);
        const char *value = p;
        if (f && p < end && *p == '"') {
            free(f->text);
            f->text = NULL;
            if (!(p = parse_string(p, end, &f->text, &f->len))) return false;
            f->is_string = true;
        } else {
            if (!(p = skip_value(p, end))) return false;
            if (f) {
                free(f->text);
                f->len = (size_t)(p - value);
                f->text = malloc(f->len + 1);
                if (!f->text) return false;
                memcpy(f->text, value, f->len);
                f->text[f->len] = '\0';
                f->is_string = false;
            }
        }
        if (f) f->present = true;
        p = skip_ws(p, end);
        if (p < end && *p == ',') {
            p = skip_ws(p + 1, end);
            continue;
        }
        if (p < end && *p == '}') return skip_ws(p + 1, end) == end;
        return false;
    }
}

/* ---- The host. */

static void reply_error(groupcast_server *server, uint64_t conn, const char *code, const char *message) {
    char reply[256];
    int n = snprintf(reply, sizeof reply, "{\"type\":\"error\",\"code\":\"%s\",\"message\":\"%s\"}", code, message);
    groupcast_server_send_text(server, conn, reply, (size_t)n);
}

/* A group id is a string, or a number meaning the same group as its text. */
static bool group_of(const command *c, const char **group, size_t *len) {
    const field *g = &c->group_id;
    if (!g->present || g->len == 0) return false;
    if (!g->is_string && !(g->text[0] == '-' || (g->text[0] >= '0' && g->text[0] <= '9'))) return false;
    *group = g->text;
    *len = g->len;
    return true;
}

static void on_message(void *userdata, groupcast_server *server, const groupcast_event *event) {
    (void)userdata;
    if (event->is_binary) {
        reply_error(server, event->conn, "binary_not_command", "send commands as JSON text");
        return;
    }
    command c;
    if (!parse_command((const char *)event->data, event->data_len, &c)) {
        command_free(&c);
        reply_error(server, event->conn, "not_json", "a command is a JSON object");
        return;
    }
    const char *group = NULL;
    size_t group_len = 0;
    const char *cmd = c.cmd.present && c.cmd.is_string ? c.cmd.text : NULL;
    if (!cmd) {
        reply_error(server, event->conn, "missing_cmd", "the cmd field is missing");
    } else if (strcmp(cmd, "add_group") != 0 && strcmp(cmd, "leave_group") != 0 &&
               strcmp(cmd, "send_to_group") != 0) {
        reply_error(server, event->conn, "unknown_cmd", "use add_group, leave_group or send_to_group");
    } else if (!group_of(&c, &group, &group_len)) {
        reply_error(server, event->conn, "missing_group_id", "group_id must be a string or a number");
    } else if (strcmp(cmd, "add_group") == 0) {
        if (groupcast_server_join(server, event->conn, group, group_len, NULL) != GROUPCAST_OK)
            reply_error(server, event->conn, "invalid_group_id", "cannot join this group");
    } else if (strcmp(cmd, "leave_group") == 0) {
        groupcast_server_leave(server, event->conn, group, group_len, NULL);
    } else if (!c.message.present) {
        reply_error(server, event->conn, "missing_message", "the message field is missing");
    } else {
        /* A string goes as is; any other value as its JSON text. */
        groupcast_server_send_to_group(server, group, group_len, c.message.text, c.message.len, NULL, 0, NULL);
    }
    command_free(&c);
}

static void usage(const char *program) {
    fprintf(stderr, "usage: %s [--listen HOST:PORT] [--channel-listen HOST:PORT]\n", program);
}

static int fail(const char *what, groupcast_result rc) {
    char message[256];
    groupcast_last_error_message(message, sizeof message, NULL);
    fprintf(stderr, "%s: %s (result %u)\n", what, message, (unsigned)rc);
    return 1;
}

int main(int argc, char **argv) {
    const char *listen = "0.0.0.0:1234";
    const char *channel_listen = "127.0.0.1:2206";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc) {
            listen = argv[++i];
        } else if (strcmp(argv[i], "--channel-listen") == 0 && i + 1 < argc) {
            channel_listen = argv[++i];
        } else {
            usage(argv[0]);
            return 2;
        }
    }

    /* Block the stop signals before any thread starts, so that the
     * library's threads inherit the mask and sigwait below receives them. */
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);

    groupcast_config *config = NULL;
    groupcast_result rc = groupcast_config_new(&config);
    if (rc == GROUPCAST_OK) rc = groupcast_config_set_listen(config, listen, strlen(listen));
    if (rc == GROUPCAST_OK)
        rc = groupcast_config_set_channel_listen(config, channel_listen, strlen(channel_listen));
    if (rc == GROUPCAST_OK) rc = groupcast_config_set_builtin_commands(config, false);
    if (rc == GROUPCAST_OK) rc = groupcast_config_on_message(config, on_message, NULL, NULL);
    groupcast_server *server = NULL;
    if (rc == GROUPCAST_OK) rc = groupcast_server_start(config, &server);
    groupcast_config_free(config);
    if (rc != GROUPCAST_OK) {
        /* One line, e.g. "groupcast: cannot listen on 0.0.0.0:1234:
         * Address already in use (os error 98)". */
        char why[256];
        groupcast_last_error_message(why, sizeof why, NULL);
        fprintf(stderr, "groupcast: %s\n", why);
        return 1;
    }

    char websocket[64], channel[64];
    groupcast_server_websocket_address(server, websocket, sizeof websocket, NULL);
    groupcast_server_channel_address(server, channel, sizeof channel, NULL);
    printf("listening websocket=%s channel=%s\n", websocket, channel);
    fflush(stdout);

    int signal_number = 0;
    sigwait(&stop_signals, &signal_number);
    rc = groupcast_server_stop(server);
    groupcast_server_free(server);
    if (rc != GROUPCAST_OK) return fail("stop", rc);
    fprintf(stderr, "stopped on signal %d\n", signal_number);
    return 0;
}
