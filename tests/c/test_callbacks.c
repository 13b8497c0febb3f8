/* Callbacks mode: a websocket client round trip through on_connect,
 * on_message and on_close running on the host thread; finalizers run once. */
#include <pthread.h>

#include "check.h"
#include "wsclient.h"

typedef struct state {
    atomic_int connects;
    atomic_int refused;
    atomic_int messages;
    atomic_int closes;
    atomic_int last_close_code;
    atomic_ullong last_closed_conn;
    atomic_int finalized;
    atomic_int wrong_thread;
    atomic_int stop_result;
    char first_path[64];
    char first_query[64];
    char first_peer[64];
    char first_upgrade[64];
} state;

static void check_thread(state *s) {
    char name[32] = "";
    pthread_getname_np(pthread_self(), name, sizeof name);
    if (strcmp(name, "groupcast-host") != 0) atomic_fetch_add(&s->wrong_thread, 1);
}

static bool on_connect(void *userdata, groupcast_server *server, const groupcast_event *event) {
    state *s = userdata;
    check_thread(s);
    if (event->kind != GROUPCAST_EVENT_CONNECT) return false;
    if (strcmp(event->path, "/deny") == 0) {
        atomic_fetch_add(&s->refused, 1);
        return false;
    }
    if (strcmp(event->path, "/login") == 0) {
        /* Decided here: the return value is then ignored. */
        atomic_fetch_add(&s->refused, 1);
        groupcast_server_refuse(server, event->conn, 401, STR("login first"));
        return true;
    }
    if (atomic_load(&s->connects) == 0) {
        snprintf(s->first_path, sizeof s->first_path, "%.*s", (int)event->path_len, event->path);
        snprintf(s->first_query, sizeof s->first_query, "%.*s", (int)event->query_len, event->query);
        snprintf(s->first_peer, sizeof s->first_peer, "%.*s", (int)event->peer_len, event->peer);
        for (size_t i = 0; i < event->headers_len; i++) {
            if (strcmp(event->headers[i].name, "Upgrade") == 0) {
                snprintf(s->first_upgrade, sizeof s->first_upgrade, "%s", event->headers[i].value);
            }
        }
    }
    atomic_fetch_add(&s->connects, 1);
    return true;
}

/* A tiny protocol owned by the host: "join:G", "send:G:TEXT" (to the group,
 * not back to the sender), "stop", anything else is echoed. */
static void on_message(void *userdata, groupcast_server *server, const groupcast_event *event) {
    state *s = userdata;
    check_thread(s);
    atomic_fetch_add(&s->messages, 1);
    if (event->is_binary) {
        groupcast_server_send_binary(server, event->conn, event->data, event->data_len);
        return;
    }
    const char *text = (const char *)event->data;
    size_t len = event->data_len;
    if (len > 5 && strncmp(text, "join:", 5) == 0) {
        groupcast_server_join(server, event->conn, text + 5, len - 5, NULL);
    } else if (len > 5 && strncmp(text, "send:", 5) == 0) {
        const char *group = text + 5;
        const char *colon = memchr(group, ':', len - 5);
        if (!colon) return;
        const char *body = colon + 1;
        uint64_t exclude[1] = {event->conn};
        groupcast_server_send_to_group(server, group, (size_t)(colon - group), body,
                                       len - (size_t)(body - text), exclude, 1, NULL);
    } else if (len == 4 && strncmp(text, "stop", 4) == 0) {
        atomic_store(&s->stop_result, (int)groupcast_server_stop(server));
    } else {
        char reply[256];
        int n = snprintf(reply, sizeof reply, "echo:%.*s", (int)len, text);
        groupcast_server_send_text(server, event->conn, reply, (size_t)n);
    }
}

static void on_close(void *userdata, groupcast_server *server, const groupcast_event *event) {
    (void)server;
    state *s = userdata;
    check_thread(s);
    atomic_store(&s->last_close_code, event->close_code);
    atomic_store(&s->last_closed_conn, event->conn);
    atomic_fetch_add(&s->closes, 1);
}

static void finalize(void *userdata) {
    state *s = userdata;
    atomic_fetch_add(&s->finalized, 1);
}

static groupcast_config *callback_config(state *s) {
    groupcast_config *config = test_config();
    CHECK_OK(groupcast_config_set_builtin_commands(config, false));
    CHECK_OK(groupcast_config_on_connect(config, on_connect, s, finalize));
    CHECK_OK(groupcast_config_on_message(config, on_message, s, finalize));
    CHECK_OK(groupcast_config_on_close(config, on_close, s, finalize));
    return config;
}

static void round_trip(void) {
    state s;
    memset(&s, 0, sizeof s);
    groupcast_config *config = callback_config(&s);
    groupcast_server *server = NULL;
    CHECK_OK(groupcast_server_start(config, &server));
    unsigned short port = server_port(server);

    /* Callbacks mode has nothing to poll. */
    groupcast_event events[1];
    size_t count = 0;
    CHECK_RC(groupcast_server_poll(server, 0, events, 1, &count), GROUPCAST_ERR_MODE);

    int a = ws_connect(port, "/chat?token=abc", 5000);
    CHECK(a >= 0);
    CHECK(ws_send_text(a, "hello") == 0);
    CHECK(ws_expect_text(a, "echo:hello"));
    CHECK(atomic_load(&s.connects) == 1);
    CHECK(strcmp(s.first_path, "/chat") == 0);
    CHECK(strcmp(s.first_query, "token=abc") == 0);
    CHECK(strncmp(s.first_peer, "127.0.0.1:", 10) == 0);
    CHECK(strcmp(s.first_upgrade, "websocket") == 0);

    /* Binary frames come back as they went. */
    const unsigned char blob[] = {0, 1, 2, 255};
    CHECK(ws_send_frame(a, WS_BINARY, blob, sizeof blob) == 0);
    ws_frame f = ws_recv(a);
    CHECK(f.opcode == WS_BINARY && f.len == sizeof blob && memcmp(f.data, blob, sizeof blob) == 0);
    ws_frame_free(&f);

    /* on_connect returns false: refused before the upgrade with HTTP 403;
     * or refuses with groupcast_server_refuse: that status and body. */
    char response[1024];
    int denied = ws_request(port, "/deny", "", 5000);
    CHECK(denied >= 0);
    CHECK(ws_read_refusal(denied, response, sizeof response) == 403);
    close(denied);
    denied = ws_request(port, "/login", "", 5000);
    CHECK(denied >= 0);
    CHECK(ws_read_refusal(denied, response, sizeof response) == 401);
    CHECK(strstr(response, "\r\n\r\nlogin first") != NULL);
    close(denied);
    CHECK(atomic_load(&s.refused) == 2);

    /* A group: the sender is excluded, the other member receives. */
    int b = ws_connect(port, "/", 5000);
    CHECK(b >= 0);
    CHECK(ws_send_text(a, "join:g1") == 0);
    CHECK(ws_send_text(b, "join:g1") == 0);
    size_t size = 0;
    WAIT_FOR(groupcast_server_group_size(server, STR("g1"), &size) == GROUPCAST_OK && size == 2);
    groupcast_groups *groups = NULL;
    CHECK_OK(groupcast_server_groups(server, &groups));
    CHECK(groupcast_groups_count(groups) == 1);
    const char *name = NULL;
    size_t name_len = 0;
    CHECK_OK(groupcast_groups_get(groups, 0, &name, &name_len));
    CHECK(name_len == 2 && strcmp(name, "g1") == 0);
    CHECK_RC(groupcast_groups_get(groups, 1, &name, &name_len), GROUPCAST_ERR_INVALID_ARGUMENT);
    groupcast_groups_free(groups);

    CHECK(ws_send_text(a, "send:g1:hi all") == 0);
    CHECK(ws_expect_text(b, "hi all"));
    /* a got nothing from its own send: its next frame is the next echo. */
    CHECK(ws_send_text(a, "after") == 0);
    CHECK(ws_expect_text(a, "echo:after"));

    /* A client close reaches on_close with its code. */
    int closes_before = atomic_load(&s.closes);
    CHECK(ws_send_close(a, 1000) == 0);
    f = ws_recv(a);
    CHECK(f.opcode == WS_CLOSE);
    ws_frame_free(&f);
    close(a);
    WAIT_FOR(atomic_load(&s.closes) == closes_before + 1);
    CHECK(atomic_load(&s.last_close_code) == 1000);
    WAIT_FOR(groupcast_server_group_size(server, STR("g1"), &size) == GROUPCAST_OK && size == 1);

    /* Stop: b gets 1001, and its close reaches on_close before stop returns. */
    closes_before = atomic_load(&s.closes);
    CHECK_OK(groupcast_server_stop(server));
    CHECK(atomic_load(&s.closes) == closes_before + 1);
    f = ws_recv(b);
    CHECK(f.opcode == WS_CLOSE && f.close_code == 1001);
    ws_frame_free(&f);
    close(b);

    /* The config still holds the callbacks: no finalizer yet. */
    groupcast_server_free(server);
    CHECK(atomic_load(&s.finalized) == 0);
    groupcast_config_free(config);
    CHECK(atomic_load(&s.finalized) == 3);
    CHECK(atomic_load(&s.wrong_thread) == 0);
}

static void stop_from_a_callback(void) {
    state s;
    memset(&s, 0, sizeof s);
    atomic_store(&s.stop_result, -1);
    groupcast_config *config = callback_config(&s);
    groupcast_server *server = NULL;
    CHECK_OK(groupcast_server_start(config, &server));
    /* Freeing the config first: the server keeps the callbacks alive. */
    groupcast_config_free(config);
    CHECK(atomic_load(&s.finalized) == 0);

    int fd = ws_connect(server_port(server), "/", 5000);
    CHECK(fd >= 0);
    CHECK(ws_send_text(fd, "stop") == 0);
    ws_frame f = ws_recv(fd);
    CHECK(f.opcode == WS_CLOSE && f.close_code == 1001);
    ws_frame_free(&f);
    close(fd);
    WAIT_FOR(atomic_load(&s.stop_result) == GROUPCAST_OK);
    size_t count = 0;
    CHECK_RC(groupcast_server_connection_count(server, &count), GROUPCAST_ERR_STOPPED);
    CHECK_RC(groupcast_server_stop(server), GROUPCAST_ERR_STOPPED);
    groupcast_server_free(server);
    CHECK(atomic_load(&s.finalized) == 3);
}

static void replaced_registration_is_finalized(void) {
    state s;
    memset(&s, 0, sizeof s);
    groupcast_config *config = test_config();
    CHECK_OK(groupcast_config_on_message(config, on_message, &s, finalize));
    CHECK_OK(groupcast_config_on_message(config, on_message, &s, finalize));
    CHECK(atomic_load(&s.finalized) == 1);
    CHECK_OK(groupcast_config_on_message(config, NULL, NULL, NULL));
    CHECK(atomic_load(&s.finalized) == 2);
    groupcast_config_free(config);
    CHECK(atomic_load(&s.finalized) == 2);
}

typedef struct channel_state {
    atomic_int events;
    char channel[32];
    char data[64];
} channel_state;

static void on_channel_event(void *userdata, groupcast_server *server, const groupcast_event *event) {
    (void)server;
    channel_state *s = userdata;
    if (event->kind != GROUPCAST_EVENT_CHANNEL) return;
    if (atomic_load(&s->events) == 0) {
        snprintf(s->channel, sizeof s->channel, "%.*s", (int)event->channel_len, event->channel);
        snprintf(s->data, sizeof s->data, "%.*s", (int)event->data_len, (const char *)event->data);
    }
    atomic_fetch_add(&s->events, 1);
}

/* A host that only subscribes to channels gets their data, and no other
 * callback is needed (the connection events the core needs for its queue
 * stay inside). */
static void channel_only_host(void) {
    channel_state s;
    memset(&s, 0, sizeof s);
    groupcast_config *config = test_config();
    CHECK_OK(groupcast_config_set_channel_listen(config, STR("127.0.0.1:0")));
    CHECK_OK(groupcast_config_on_channel_event(config, on_channel_event, &s, NULL));
    groupcast_server *server = NULL;
    CHECK_OK(groupcast_server_start(config, &server));
    groupcast_config_free(config);
    CHECK_OK(groupcast_server_channel_subscribe(server, STR("news")));
    /* Clients come and go meanwhile: their closes must not disturb anything. */
    int fd = ws_connect(server_port(server), "/", 5000);
    CHECK(fd >= 0);
    CHECK(ws_send_text(fd, "{\"cmd\":\"add_group\",\"group_id\":\"1\"}") == 0);
    close(fd);
    for (int i = 0; i < 100 && atomic_load(&s.events) == 0; i++) {
        CHECK_OK(groupcast_server_channel_publish(server, STR("news"), STR("[1,2]")));
        sleep_ms(20);
    }
    CHECK(atomic_load(&s.events) >= 1);
    CHECK(strcmp(s.channel, "news") == 0 && strcmp(s.data, "[1,2]") == 0);
    groupcast_server_free(server);
}

int main(void) {
    round_trip();
    channel_only_host();
    stop_from_a_callback();
    replaced_registration_is_finalized();
    report("test_callbacks");
    return 0;
}
