/* Poll mode: a websocket client round trip through groupcast_server_poll
 * from this thread, the notification fd, channel events, and the end of
 * the event stream after stop. */
#include <poll.h>

#include "check.h"
#include "wsclient.h"

static bool fd_readable(int fd) {
    struct pollfd p = {fd, POLLIN, 0};
    return poll(&p, 1, 0) == 1;
}

/* Polls until one event arrives (5 s at most) and returns a copy of its
 * kind, conn and data: the views are only valid until the next poll. */
typedef struct taken {
    uint32_t kind;
    uint64_t conn;
    uint16_t close_code;
    bool is_binary;
    char data[256];
    size_t data_len;
    char channel[64];
    char path[64];
} taken;

static taken poll_one(groupcast_server *server) {
    groupcast_event event;
    size_t count = 0;
    CHECK_OK(groupcast_server_poll(server, 5000, &event, 1, &count));
    CHECK(count == 1);
    taken t;
    memset(&t, 0, sizeof t);
    t.kind = event.kind;
    t.conn = event.conn;
    t.close_code = event.close_code;
    t.is_binary = event.is_binary;
    CHECK(event.data_len < sizeof t.data);
    if (event.data) memcpy(t.data, event.data, event.data_len);
    t.data_len = event.data_len;
    if (event.channel) snprintf(t.channel, sizeof t.channel, "%s", event.channel);
    if (event.path) snprintf(t.path, sizeof t.path, "%s", event.path);
    return t;
}

/* Reads a response head byte by byte (no frame consumed) into `head`. */
static void read_head(int fd, char *head, size_t size) {
    size_t got = 0;
    while (got + 1 < size && recv(fd, head + got, 1, 0) == 1) {
        got++;
        if (got >= 4 && memcmp(head + got - 4, "\r\n\r\n", 4) == 0) break;
    }
    head[got] = '\0';
}

/* The value of header `name` in a connect event, copied into `out`; false
 * when absent. */
static bool header_of(const groupcast_event *event, const char *name, char *out, size_t size) {
    for (size_t i = 0; i < event->headers_len; i++) {
        const groupcast_header *h = &event->headers[i];
        if (h->name_len == strlen(name) && memcmp(h->name, name, h->name_len) == 0) {
            snprintf(out, size, "%.*s", (int)h->value_len, h->value);
            return true;
        }
    }
    return false;
}

/* With GROUPCAST_EVENTS_APPROVE the upgrade waits for the host, which sees
 * the request's headers and offered subprotocols; the held connection takes
 * actions meanwhile; it is admitted (with a subprotocol) or refused with an
 * HTTP status before any websocket frame. */
static void approval(void) {
    groupcast_config *config = test_config();
    CHECK_OK(groupcast_config_set_events(config, GROUPCAST_EVENTS_APPROVE | GROUPCAST_EVENTS_MESSAGE));
    groupcast_server *server = NULL;
    CHECK_OK(groupcast_server_start(config, &server));
    groupcast_config_free(config);

    int fd = ws_request(server_port(server), "/",
                        "Cookie: session=42\r\nSec-WebSocket-Protocol: chat, superchat\r\n", 5000);
    CHECK(fd >= 0);
    groupcast_event event;
    size_t count = 0;
    CHECK_OK(groupcast_server_poll(server, 5000, &event, 1, &count));
    CHECK(count == 1 && event.kind == GROUPCAST_EVENT_CONNECT);
    uint64_t conn = event.conn;
    char value[64];
    CHECK(header_of(&event, "Cookie", value, sizeof value) && strcmp(value, "session=42") == 0);
    CHECK(header_of(&event, "Upgrade", value, sizeof value) && strcmp(value, "websocket") == 0);
    CHECK(event.subprotocols_len == strlen("chat, superchat") &&
          strcmp(event.subprotocols, "chat, superchat") == 0);
    CHECK_OK(groupcast_server_send_text(server, conn, STR("welcome"))); /* held, yet open */
    CHECK_RC(groupcast_server_admit_subprotocol(server, conn, STR("other")), GROUPCAST_ERR_CONFIG);
    CHECK_OK(groupcast_server_admit_subprotocol(server, conn, STR("superchat")));
    char head[1024];
    read_head(fd, head, sizeof head);
    CHECK(strncmp(head, "HTTP/1.1 101 ", 13) == 0);
    CHECK(strstr(head, "\r\nsec-websocket-protocol: superchat\r\n") != NULL);
    CHECK(ws_expect_text(fd, "welcome"));
    CHECK(ws_send_text(fd, "after") == 0);
    taken t = poll_one(server);
    CHECK(t.kind == GROUPCAST_EVENT_MESSAGE && strcmp(t.data, "after") == 0);
    close(fd);

    /* Refused with a status and a body: a plain HTTP response. */
    int refused = ws_request(server_port(server), "/", "", 5000);
    CHECK(refused >= 0);
    t = poll_one(server);
    CHECK(t.kind == GROUPCAST_EVENT_CONNECT);
    CHECK_RC(groupcast_server_refuse(server, t.conn, 200, STR("")), GROUPCAST_ERR_CONFIG);
    CHECK_OK(groupcast_server_refuse(server, t.conn, 401, STR("login first")));
    CHECK_RC(groupcast_server_refuse(server, t.conn, 401, NULL, 0), GROUPCAST_ERR_UNKNOWN_CONNECTION);
    char response[1024];
    CHECK(ws_read_refusal(refused, response, sizeof response) == 401);
    CHECK(strstr(response, "\r\n\r\nlogin first") != NULL);
    close(refused);

    /* Closing a held connection refuses it with 403. */
    refused = ws_request(server_port(server), "/", "", 5000);
    CHECK(refused >= 0);
    t = poll_one(server);
    CHECK(t.kind == GROUPCAST_EVENT_CONNECT);
    CHECK_OK(groupcast_server_close(server, t.conn, 4403, STR("no")));
    CHECK(ws_read_refusal(refused, response, sizeof response) == 403);
    close(refused);
    groupcast_server_free(server);
}

/* GROUPCAST_EVENTS_CHANNEL alone: channel data through poll, and none of
 * the connection events the core queues alongside. */
static void channel_only(void) {
    groupcast_config *config = test_config();
    CHECK_OK(groupcast_config_set_channel_listen(config, STR("127.0.0.1:0")));
    CHECK_OK(groupcast_config_set_events(config, GROUPCAST_EVENTS_CHANNEL));
    groupcast_server *server = NULL;
    CHECK_OK(groupcast_server_start(config, &server));
    groupcast_config_free(config);
    CHECK_OK(groupcast_server_channel_subscribe(server, STR("news")));
    int fd = ws_connect(server_port(server), "/", 5000);
    CHECK(fd >= 0);
    CHECK(ws_send_close(fd, 1000) == 0);
    ws_frame f = ws_recv(fd);
    ws_frame_free(&f);
    close(fd);
    size_t open = 1;
    WAIT_FOR(groupcast_server_connection_count(server, &open) == GROUPCAST_OK && open == 0);
    groupcast_event events[8];
    size_t count = 0;
    int channel_events = 0;
    for (int tries = 0; tries < 50 && channel_events == 0; tries++) {
        CHECK_OK(groupcast_server_channel_publish(server, STR("news"), STR("true")));
        CHECK_OK(groupcast_server_poll(server, 100, events, 8, &count));
        for (size_t i = 0; i < count; i++) {
            CHECK(events[i].kind == GROUPCAST_EVENT_CHANNEL);
            channel_events++;
        }
    }
    CHECK(channel_events > 0);
    groupcast_server_free(server);
}

int main(void) {
    approval();
    channel_only();
    groupcast_config *config = test_config();
    CHECK_OK(groupcast_config_set_channel_listen(config, STR("127.0.0.1:0")));
    CHECK_OK(groupcast_config_set_events(
        config, GROUPCAST_EVENTS_CONNECT | GROUPCAST_EVENTS_MESSAGE | GROUPCAST_EVENTS_CLOSE));
    groupcast_server *server = NULL;
    CHECK_OK(groupcast_server_start(config, &server));
    groupcast_config_free(config);
    char channel_addr[64];
    size_t channel_len = 0;
    CHECK_OK(groupcast_server_channel_address(server, channel_addr, sizeof channel_addr, &channel_len));
    CHECK(channel_len > 0);

    int notify = -1;
    CHECK_OK(groupcast_server_notify_fd(server, &notify));
    CHECK(notify >= 0);
    CHECK(!fd_readable(notify));

    /* Nothing waiting: a zero timeout returns no event. */
    groupcast_event events[8];
    size_t count = 99;
    CHECK_OK(groupcast_server_poll(server, 0, events, 8, &count));
    CHECK(count == 0);
    CHECK_RC(groupcast_server_poll(server, 0, events, 0, &count), GROUPCAST_ERR_INVALID_ARGUMENT);
    CHECK_RC(groupcast_server_poll(server, 0, NULL, 8, &count), GROUPCAST_ERR_NULL_PARAMETER);

    int fd = ws_connect(server_port(server), "/room/1?x=y", 5000);
    CHECK(fd >= 0);
    WAIT_FOR(fd_readable(notify));
    taken t = poll_one(server);
    CHECK(t.kind == GROUPCAST_EVENT_CONNECT);
    CHECK(strcmp(t.path, "/room/1") == 0);
    uint64_t conn = t.conn;
    CHECK(!fd_readable(notify));

    /* Built-in commands stay in Rust; other messages come to the host. */
    CHECK(ws_send_text(fd, "{\"cmd\":\"add_group\",\"group_id\":\"123\"}") == 0);
    CHECK(ws_send_text(fd, "ping") == 0);
    t = poll_one(server);
    CHECK(t.kind == GROUPCAST_EVENT_MESSAGE && t.conn == conn && !t.is_binary);
    CHECK(t.data_len == 4 && memcmp(t.data, "ping", 4) == 0);
    size_t size = 0;
    CHECK_OK(groupcast_server_group_size(server, STR("123"), &size));
    CHECK(size == 1);
    CHECK_OK(groupcast_server_send_text(server, conn, STR("pong")));
    CHECK(ws_expect_text(fd, "pong"));

    /* The host sends to the group the client joined by itself. */
    size_t delivered = 0;
    CHECK_OK(groupcast_server_send_to_group(server, STR("123"), STR("to the group"), NULL, 0, &delivered));
    CHECK(delivered == 1);
    CHECK(ws_expect_text(fd, "to the group"));
    CHECK_OK(groupcast_server_broadcast(server, STR("to all"), &conn, 1, &delivered));
    CHECK(delivered == 0);
    CHECK_OK(groupcast_server_broadcast(server, STR("to all"), NULL, 0, &delivered));
    CHECK(delivered == 1);
    CHECK(ws_expect_text(fd, "to all"));

    /* Several messages come in one batch, in order. */
    CHECK(ws_send_text(fd, "one") == 0);
    CHECK(ws_send_text(fd, "two") == 0);
    const unsigned char blob[] = {9, 0, 9};
    CHECK(ws_send_frame(fd, WS_BINARY, blob, sizeof blob) == 0);
    size_t got = 0;
    char seen[3][8];
    bool binary_seen = false;
    while (got < 3) {
        CHECK_OK(groupcast_server_poll(server, 5000, events, 8, &count));
        CHECK(count >= 1);
        for (size_t i = 0; i < count; i++, got++) {
            CHECK(events[i].kind == GROUPCAST_EVENT_MESSAGE && got < 3);
            snprintf(seen[got], sizeof seen[got], "%.*s", (int)events[i].data_len,
                     (const char *)events[i].data);
            if (events[i].is_binary) {
                binary_seen = events[i].data_len == 3 && memcmp(events[i].data, blob, 3) == 0;
            }
        }
    }
    CHECK(strcmp(seen[0], "one") == 0 && strcmp(seen[1], "two") == 0 && binary_seen);

    /* Channel events of the host's own subscription. */
    CHECK_RC(groupcast_server_channel_publish(server, STR("news"), STR("not json")), GROUPCAST_ERR_CHANNEL);
    CHECK_OK(groupcast_server_channel_subscribe(server, STR("news")));
    /* The subscription travels to the channel server: publish until one arrives. */
    taken channel_event;
    memset(&channel_event, 0, sizeof channel_event);
    for (int tries = 0; tries < 50 && channel_event.kind == 0; tries++) {
        CHECK_OK(groupcast_server_channel_publish(server, STR("news"), STR("{\"n\":1}")));
        CHECK_OK(groupcast_server_poll(server, 100, events, 1, &count));
        if (count == 1) {
            channel_event.kind = events[0].kind;
            snprintf(channel_event.channel, sizeof channel_event.channel, "%s", events[0].channel);
            snprintf(channel_event.data, sizeof channel_event.data, "%.*s", (int)events[0].data_len,
                     (const char *)events[0].data);
        }
    }
    CHECK(channel_event.kind == GROUPCAST_EVENT_CHANNEL);
    CHECK(strcmp(channel_event.channel, "news") == 0);
    CHECK(strcmp(channel_event.data, "{\"n\":1}") == 0);
    CHECK_OK(groupcast_server_channel_unsubscribe(server, STR("news")));
    /* Drain the extra deliveries of the retry loop. */
    while (groupcast_server_poll(server, 200, events, 8, &count) == GROUPCAST_OK && count > 0) {
        for (size_t i = 0; i < count; i++) CHECK(events[i].kind == GROUPCAST_EVENT_CHANNEL);
    }

    /* The client closes: a close event with its code. */
    CHECK(ws_send_close(fd, 4000) == 0);
    t = poll_one(server);
    CHECK(t.kind == GROUPCAST_EVENT_CLOSE && t.conn == conn && t.close_code == 4000);
    close(fd);

    /* After stop the remaining events can be taken, then poll says stopped. */
    fd = ws_connect(server_port(server), "/", 5000);
    CHECK(fd >= 0);
    t = poll_one(server);
    CHECK(t.kind == GROUPCAST_EVENT_CONNECT);
    CHECK_OK(groupcast_server_stop(server));
    t = poll_one(server);
    CHECK(t.kind == GROUPCAST_EVENT_CLOSE && t.close_code == 1001);
    CHECK_RC(groupcast_server_poll(server, 1000, events, 8, &count), GROUPCAST_ERR_STOPPED);
    close(fd);
    groupcast_server_free(server);
    report("test_poll");
    return 0;
}
