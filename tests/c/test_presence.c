/* Users and presence from C, on two nodes sharing a channel server: a uid's
 * devices on both nodes get groupcast_server_send_to_uid once each,
 * presence and cluster stats agree from both nodes, an action reaches a
 * connection held by the other node, ungroup empties the group on both,
 * and bad uids get GROUPCAST_ERR_INVALID_UID. */
#include "check.h"
#include "wsclient.h"

/* Waits for the next connect event and returns its connection id. */
static uint64_t next_conn(groupcast_server *server) {
    groupcast_event event;
    size_t count = 0;
    CHECK_OK(groupcast_server_poll(server, 5000, &event, 1, &count));
    CHECK(count == 1);
    CHECK(event.kind == GROUPCAST_EVENT_CONNECT);
    return event.conn;
}

static groupcast_server *start_node(const char *channel) {
    groupcast_config *config = test_config();
    CHECK_OK(groupcast_config_set_events(config, GROUPCAST_EVENTS_CONNECT));
    if (channel) {
        CHECK_OK(groupcast_config_set_channel(config, channel, strlen(channel)));
    } else {
        CHECK_OK(groupcast_config_set_channel_listen(config, STR("127.0.0.1:0")));
    }
    CHECK_OK(groupcast_config_set_presence(config, true, 60000, true));
    groupcast_server *server = NULL;
    CHECK_OK(groupcast_server_start(config, &server));
    groupcast_config_free(config);
    return server;
}

static uint64_t cluster_nodes(const groupcast_server *server) {
    groupcast_cluster_stats stats;
    CHECK_OK(groupcast_server_cluster_stats(server, &stats));
    return stats.nodes;
}

static uint64_t group_connections(const groupcast_server *server, const char *group) {
    char json[512];
    uint64_t connections = 0;
    CHECK_OK(groupcast_server_presence(server, group, strlen(group), 100, &connections, NULL,
                                       json, sizeof json, NULL));
    return connections;
}

static bool online(const groupcast_server *server, const char *uid) {
    bool is = false;
    CHECK_OK(groupcast_server_is_uid_online(server, uid, strlen(uid), &is));
    return is;
}

int main(void) {
    groupcast_server *a = start_node(NULL);
    char channel[64];
    CHECK_OK(groupcast_server_channel_address(a, channel, sizeof channel, NULL));
    groupcast_server *b = start_node(channel);
    WAIT_FOR(cluster_nodes(a) == 2 && cluster_nodes(b) == 2);

    /* Bob on both nodes, carol on b. */
    int phone = ws_connect(server_port(a), "/", 5000);
    uint64_t phone_id = next_conn(a);
    int laptop = ws_connect(server_port(b), "/", 5000);
    uint64_t laptop_id = next_conn(b);
    int other = ws_connect(server_port(b), "/", 5000);
    uint64_t other_id = next_conn(b);
    CHECK(phone >= 0 && laptop >= 0 && other >= 0);
    CHECK_OK(groupcast_server_bind_uid(a, phone_id, STR("bob")));
    CHECK_OK(groupcast_server_bind_uid(b, laptop_id, STR("bob")));
    CHECK_OK(groupcast_server_bind_uid(b, other_id, STR("carol")));
    char uid[257];
    bool bound = false;
    size_t uid_len = 0;
    CHECK_OK(groupcast_server_uid_of(a, phone_id, &bound, uid, sizeof uid, &uid_len));
    CHECK(bound && uid_len == 3 && strcmp(uid, "bob") == 0);
    WAIT_FOR(online(a, "carol"));

    size_t delivered = 99;
    CHECK_OK(groupcast_server_send_to_uid(a, STR("bob"), STR("for bob"), &delivered));
    CHECK(delivered == 1);
    CHECK(ws_expect_text(phone, "for bob"));
    CHECK(ws_expect_text(laptop, "for bob"));

    /* Presence agrees from both nodes. */
    CHECK_OK(groupcast_server_join(b, laptop_id, STR("room"), NULL));
    CHECK_OK(groupcast_server_join(a, phone_id, STR("room"), NULL));
    CHECK_OK(groupcast_server_join(b, other_id, STR("room"), NULL));
    WAIT_FOR(group_connections(a, "room") == 3 && group_connections(b, "room") == 3);
    char json[512];
    uint64_t users = 0;
    CHECK_OK(groupcast_server_presence(a, STR("room"), 100, NULL, &users, json, sizeof json, NULL));
    CHECK(users == 2);
    CHECK(strcmp(json, "{\"connections\":3,\"users\":2,\"uids\":[\"bob\",\"carol\"],\"truncated\":false}") == 0);
    CHECK_RC(groupcast_server_presence(a, STR("room"), 100, NULL, NULL, json, 8, NULL),
             GROUPCAST_ERR_BUFFER_TOO_SMALL);
    groupcast_cluster_stats stats;
    CHECK_OK(groupcast_server_cluster_stats(b, &stats));
    CHECK(stats.nodes == 2 && stats.connections == 3 && stats.users == 2 && stats.groups == 1);

    /* An action on node a for a connection of node b. */
    CHECK_OK(groupcast_server_send_text(a, other_id, STR("across")));
    CHECK(ws_expect_text(other, "across"));

    /* Ungroup from node a empties the room on node b too. */
    size_t left = 99;
    CHECK_OK(groupcast_server_ungroup(a, STR("room"), &left));
    CHECK(left == 1);
    size_t size = 99;
    WAIT_FOR(groupcast_server_group_size(b, STR("room"), &size) == GROUPCAST_OK && size == 0);
    WAIT_FOR(group_connections(a, "room") == 0);

    /* Bad uids. */
    CHECK_RC(groupcast_server_bind_uid(a, phone_id, NULL, 0), GROUPCAST_ERR_INVALID_UID);
    char long_uid[300];
    memset(long_uid, 'x', sizeof long_uid);
    CHECK_RC(groupcast_server_send_to_uid(a, long_uid, 257, STR("x"), NULL), GROUPCAST_ERR_INVALID_UID);
    char detail[256];
    groupcast_last_error_message(detail, sizeof detail, NULL);
    CHECK(strstr(detail, "at most 256 bytes") != NULL);
    CHECK_RC(groupcast_server_bind_uid(NULL, 1, STR("x")), GROUPCAST_ERR_NULL_PARAMETER);

    /* Unbound: no uid, and bob is only on node b now. */
    CHECK_OK(groupcast_server_unbind_uid(a, phone_id));
    CHECK_OK(groupcast_server_uid_of(a, phone_id, &bound, uid, sizeof uid, NULL));
    CHECK(!bound && uid[0] == '\0');

    close(phone);
    close(laptop);
    close(other);
    CHECK_OK(groupcast_server_stop(b));
    CHECK_OK(groupcast_server_stop(a));
    groupcast_server_free(b);
    groupcast_server_free(a);
    report("test_presence");
    return 0;
}
