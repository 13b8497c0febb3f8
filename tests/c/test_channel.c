/* The standalone channel server and client from C, and groupcast servers
 * joined through that channel server. */
#include <poll.h>

#include "check.h"
#include "wsclient.h"

/* The address a standalone channel server listens on. */
static void channel_address(const groupcast_channel_server *server, char *addr, size_t len) {
    size_t written = 0;
    CHECK_OK(groupcast_channel_server_address(server, addr, len, &written));
    CHECK(written == strlen(addr) && written > 0);
}

static groupcast_channel_client *connected_client(const char *addr) {
    groupcast_channel_client *client = NULL;
    CHECK_OK(groupcast_channel_client_connect(addr, strlen(addr), NULL, 0, &client));
    bool connected = false;
    CHECK_OK(groupcast_channel_client_wait_connected(client, 5000, &connected));
    CHECK(connected);
    return client;
}

/* Polls `client` until one event comes (at most 5 s). */
static groupcast_event poll_one(groupcast_channel_client *client) {
    groupcast_event events[4];
    size_t count = 0;
    CHECK_OK(groupcast_channel_client_poll(client, 5000, events, 4, &count));
    CHECK(count == 1);
    return events[0];
}

static void bad_addresses_are_argument_errors(void) {
    groupcast_channel_server *server = NULL;
    CHECK_RC(groupcast_channel_server_start(NULL, 0, NULL, 0, &server), GROUPCAST_ERR_INVALID_ARGUMENT);
    CHECK_RC(groupcast_channel_server_start(STR("127.0.0.1"), NULL, 0, &server), GROUPCAST_ERR_INVALID_ARGUMENT);
    CHECK(server == NULL);
    char why[256];
    groupcast_last_error_message(why, sizeof why, NULL);
    CHECK(strstr(why, "HOST:PORT") != NULL);
    CHECK_RC(groupcast_channel_server_start(STR("127.0.0.1:0"), NULL, 0, NULL),
             GROUPCAST_ERR_NULL_PARAMETER);

    groupcast_channel_client *client = NULL;
    CHECK_RC(groupcast_channel_client_connect(NULL, 0, NULL, 0, &client), GROUPCAST_ERR_INVALID_ARGUMENT);
    CHECK_RC(groupcast_channel_client_connect(STR("no-port"), NULL, 0, &client), GROUPCAST_ERR_INVALID_ARGUMENT);
    CHECK(client == NULL);
    CHECK_RC(groupcast_channel_client_connect(STR("127.0.0.1:1"), NULL, 0, NULL),
             GROUPCAST_ERR_NULL_PARAMETER);

    /* A server joining a channel server at a malformed address: refused
     * by the setter. */
    groupcast_config *config = test_config();
    CHECK_RC(groupcast_config_set_channel(config, STR("127.0.0.1")), GROUPCAST_ERR_INVALID_ARGUMENT);
    groupcast_last_error_message(why, sizeof why, NULL);
    CHECK(strstr(why, "channel") != NULL && strstr(why, "HOST:PORT") != NULL);
    groupcast_config_free(config);

    groupcast_channel_server_free(NULL);
    groupcast_channel_client_free(NULL);
}

/* A subscriber receives, through poll, the exact bytes another client
 * published; stop, close and free are clean. */
static void clients_publish_and_receive_through_a_standalone_server(void) {
    groupcast_channel_server *server = NULL;
    CHECK_OK(groupcast_channel_server_start(STR("127.0.0.1:0"), NULL, 0, &server));
    char addr[64];
    channel_address(server, addr, sizeof addr);
    CHECK(strncmp(addr, "127.0.0.1:", 10) == 0 && strcmp(addr, "127.0.0.1:0") != 0);

    groupcast_channel_client *subscriber = connected_client(addr);
    groupcast_channel_client *publisher = connected_client(addr);
    CHECK_OK(groupcast_channel_client_subscribe(subscriber, STR("news")));
    size_t subscribers = 0;
    WAIT_FOR(groupcast_channel_server_subscriber_count(server, STR("news"), &subscribers) ==
                 GROUPCAST_OK &&
             subscribers == 1);

    /* Nothing yet: a poll times out with 0 events. */
    groupcast_event events[4];
    size_t count = 7;
    CHECK_OK(groupcast_channel_client_poll(subscriber, 0, events, 4, &count));
    CHECK(count == 0);

    const char *data = "{\"n\":1,\"list\":[true,null,\"caf\xc3\xa9\"]}";
    CHECK_OK(groupcast_channel_client_publish(publisher, STR("other"), STR("2")));
    CHECK_OK(groupcast_channel_client_publish(publisher, STR("news"), STR(data)));
    groupcast_event e = poll_one(subscriber);
    CHECK(e.kind == GROUPCAST_EVENT_CHANNEL);
    CHECK(e.channel_len == 4 && memcmp(e.channel, "news", 4) == 0 && e.channel[4] == '\0');
    CHECK(e.data_len == strlen(data) && memcmp(e.data, data, e.data_len) == 0);
    CHECK(e.data[e.data_len] == '\0');
    CHECK(e.conn == 0 && e.peer == NULL);

    /* The notification fd is readable while an event waits. */
    int fd = -1;
    CHECK_OK(groupcast_channel_client_notify_fd(subscriber, &fd));
    CHECK(fd >= 0);
    CHECK_OK(groupcast_channel_client_publish(publisher, STR("news"), STR("[]")));
    struct pollfd pfd = {fd, POLLIN, 0};
    CHECK(poll(&pfd, 1, 5000) == 1);
    e = poll_one(subscriber);
    CHECK(e.data_len == 2 && memcmp(e.data, "[]", 2) == 0);

    /* Refused requests. */
    CHECK_RC(groupcast_channel_client_publish(publisher, STR("news"), STR("not json")),
             GROUPCAST_ERR_CHANNEL);
    CHECK_RC(groupcast_channel_client_publish(publisher, NULL, 0, STR("1")), GROUPCAST_ERR_CHANNEL);
    CHECK_RC(groupcast_channel_client_subscribe(publisher, NULL, 0), GROUPCAST_ERR_CHANNEL);
    CHECK_RC(groupcast_channel_client_poll(subscriber, 0, events, 0, &count),
             GROUPCAST_ERR_INVALID_ARGUMENT);
    CHECK_RC(groupcast_channel_client_poll(subscriber, 0, NULL, 4, &count),
             GROUPCAST_ERR_NULL_PARAMETER);
    CHECK_RC(groupcast_channel_client_publish(NULL, STR("news"), STR("1")),
             GROUPCAST_ERR_NULL_PARAMETER);

    /* Unsubscribed: the server counts no subscriber. */
    CHECK_OK(groupcast_channel_client_unsubscribe(subscriber, STR("news")));
    WAIT_FOR(groupcast_channel_server_subscriber_count(server, STR("news"), &subscribers) ==
                 GROUPCAST_OK &&
             subscribers == 0);

    /* Close: the queue finishes, a second close is harmless. */
    CHECK_OK(groupcast_channel_client_close(subscriber));
    CHECK_RC(groupcast_channel_client_close(subscriber), GROUPCAST_ERR_STOPPED);
    CHECK_RC(groupcast_channel_client_poll(subscriber, -1, events, 4, &count), GROUPCAST_ERR_STOPPED);
    CHECK_RC(groupcast_channel_client_subscribe(subscriber, STR("news")), GROUPCAST_ERR_STOPPED);
    groupcast_channel_client_free(subscriber);

    CHECK_OK(groupcast_channel_server_stop(server));
    CHECK_RC(groupcast_channel_server_stop(server), GROUPCAST_ERR_STOPPED);
    CHECK_RC(groupcast_channel_server_subscriber_count(server, STR("news"), &subscribers),
             GROUPCAST_ERR_STOPPED);
    char after[64];
    channel_address(server, after, sizeof after);
    CHECK(strcmp(after, addr) == 0); /* readable after stop */
    bool connected = true;
    CHECK_OK(groupcast_channel_client_wait_connected(publisher, 2000, &connected));
    WAIT_FOR(groupcast_channel_client_wait_connected(publisher, 0, &connected) == GROUPCAST_OK &&
             !connected);
    groupcast_channel_server_free(server);
    /* Free without close closes it. */
    groupcast_channel_client_free(publisher);
}

/* A server that joins the channel server with the given events. */
static groupcast_server *node_on(const char *addr, uint32_t events) {
    groupcast_config *config = test_config();
    CHECK_OK(groupcast_config_set_channel(config, addr, strlen(addr)));
    if (events) CHECK_OK(groupcast_config_set_events(config, events));
    groupcast_server *server = NULL;
    CHECK_OK(groupcast_server_start(config, &server));
    groupcast_config_free(config);
    return server;
}

/* Two groupcast servers joined through a standalone channel server: a
 * group message sent on one reaches a member on the other, and a host
 * channel published by one reaches the other's host and a standalone
 * client. */
static void servers_talk_through_a_standalone_server(void) {
    groupcast_channel_server *hub = NULL;
    CHECK_OK(groupcast_channel_server_start(STR("127.0.0.1:0"), NULL, 0, &hub));
    char addr[64];
    channel_address(hub, addr, sizeof addr);
    groupcast_server *first = node_on(addr, 0);
    groupcast_server *second = node_on(addr, GROUPCAST_EVENTS_CHANNEL);
    groupcast_channel_client *listener = connected_client(addr);

    /* A member of "room" on the second server. */
    int fd = ws_connect(server_port(second), "/", 300);
    CHECK(fd >= 0);
    CHECK(ws_send_text(fd, "{\"cmd\":\"add_group\",\"group_id\":\"room\"}") == 0);
    size_t members = 0;
    WAIT_FOR(groupcast_server_group_size(second, STR("room"), &members) == GROUPCAST_OK &&
             members == 1);
    /* Sent on the first server (which has no member): repeated until the
     * second has subscribed the group on the channel server. */
    int received = 0;
    for (int tries = 0; tries < 30 && !received; tries++) {
        size_t local = 9;
        CHECK_OK(groupcast_server_send_to_group(first, STR("room"), STR("across"), NULL, 0, &local));
        CHECK(local == 0);
        ws_frame f = ws_recv(fd);
        received = f.opcode == WS_TEXT && f.len == 6 && memcmp(f.data, "across", 6) == 0;
        CHECK(received || f.opcode == -1); /* nothing else arrives */
        ws_frame_free(&f);
    }
    CHECK(received);
    close(fd);

    /* A host channel: the second server's host and a standalone client
     * both receive what the first server's host publishes. */
    CHECK_OK(groupcast_server_channel_subscribe(second, STR("alerts")));
    CHECK_OK(groupcast_channel_client_subscribe(listener, STR("alerts")));
    size_t subscribers = 0;
    WAIT_FOR(groupcast_channel_server_subscriber_count(hub, STR("alerts"), &subscribers) ==
                 GROUPCAST_OK &&
             subscribers == 2);
    CHECK_OK(groupcast_server_channel_publish(first, STR("alerts"), STR("{\"level\":3}")));
    groupcast_event e = poll_one(listener);
    CHECK(e.kind == GROUPCAST_EVENT_CHANNEL && e.data_len == 11 &&
          memcmp(e.data, "{\"level\":3}", 11) == 0);
    groupcast_event events[8];
    size_t count = 0;
    int seen = 0;
    for (int tries = 0; tries < 50 && !seen; tries++) {
        CHECK_OK(groupcast_server_poll(second, 100, events, 8, &count));
        for (size_t i = 0; i < count; i++) {
            /* Only the channel events were asked for: no close event of
             * the websocket client above. */
            CHECK(events[i].kind == GROUPCAST_EVENT_CHANNEL);
            CHECK(events[i].channel_len == 6 && memcmp(events[i].channel, "alerts", 6) == 0);
            CHECK(events[i].data_len == 11 && memcmp(events[i].data, "{\"level\":3}", 11) == 0);
            seen++;
        }
    }
    CHECK(seen == 1);

    groupcast_channel_client_free(listener);
    groupcast_server_free(first);
    groupcast_server_free(second);
    CHECK_OK(groupcast_channel_server_stop(hub));
    groupcast_channel_server_free(hub);
}

int main(void) {
    bad_addresses_are_argument_errors();
    clients_publish_and_receive_through_a_standalone_server();
    servers_talk_through_a_standalone_server();
    report("test_channel");
    return 0;
}
