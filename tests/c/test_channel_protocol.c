/* groupcast_config_set_channel_protocol: a workerman-mode server joins a
 * channel server in the seed's layout (one subscription, to send_to_group,
 * and none per group); unknown names are refused by the setter, and the
 * mode without a channel server is refused at start. */
#include "check.h"
#include "wsclient.h"

static size_t subscribers(const groupcast_channel_server *channel, const char *name) {
    size_t count = 0;
    CHECK_OK(groupcast_channel_server_subscriber_count(channel, STR(name), &count));
    return count;
}

static void unknown_protocols_are_refused_by_the_setter(void) {
    groupcast_config *config = test_config();
    CHECK_RC(groupcast_config_set_channel_protocol(config, STR("php")), GROUPCAST_ERR_INVALID_ARGUMENT);
    char why[256];
    groupcast_last_error_message(why, sizeof why, NULL);
    CHECK(strstr(why, "groupcast or workerman") != NULL);
    /* Workerman without a channel server: refused at start, named. */
    CHECK_OK(groupcast_config_set_channel_protocol(config, STR("workerman")));
    groupcast_server *server = NULL;
    CHECK_RC(groupcast_server_start(config, &server), GROUPCAST_ERR_CONFIG);
    groupcast_last_error_message(why, sizeof why, NULL);
    CHECK(strstr(why, "channel_protocol") != NULL);
    /* Length 0 restores the default: it starts. */
    CHECK_OK(groupcast_config_set_channel_protocol(config, NULL, 0));
    CHECK_OK(groupcast_server_start(config, &server));
    CHECK_OK(groupcast_server_stop(server));
    groupcast_server_free(server);
    groupcast_config_free(config);
}

static void a_workerman_node_subscribes_to_send_to_group_only(void) {
    groupcast_channel_server *channel = NULL;
    CHECK_OK(groupcast_channel_server_start(STR("127.0.0.1:0"), NULL, 0, &channel));
    char addr[64];
    size_t len = 0;
    CHECK_OK(groupcast_channel_server_address(channel, addr, sizeof addr, &len));

    groupcast_config *config = test_config();
    CHECK_OK(groupcast_config_set_channel(config, addr, len));
    CHECK_OK(groupcast_config_set_channel_protocol(config, STR("workerman")));
    groupcast_server *server = NULL;
    CHECK_OK(groupcast_server_start(config, &server));
    WAIT_FOR(subscribers(channel, "send_to_group") == 1);

    /* A member joins: still no per-group channel (no interest routing). */
    int fd = ws_connect(server_port(server), "/", 5000);
    CHECK(fd >= 0);
    CHECK(ws_send_text(fd, "{\"cmd\":\"add_group\",\"group_id\":\"7\"}") == 0);
    CHECK(ws_send_text(fd, "{\"cmd\":\"send_to_group\",\"group_id\":\"7\",\"message\":\"hi\"}") == 0);
    CHECK(ws_expect_text(fd, "hi"));
    CHECK(subscribers(channel, "groupcast:group:7") == 0);
    CHECK(subscribers(channel, "send_to_group") == 1);
    close(fd);

    CHECK_OK(groupcast_server_stop(server));
    groupcast_server_free(server);
    groupcast_config_free(config);
    CHECK_OK(groupcast_channel_server_stop(channel));
    groupcast_channel_server_free(channel);
}

int main(void) {
    unknown_protocols_are_refused_by_the_setter();
    a_workerman_node_subscribes_to_send_to_group_only();
    report("test_channel_protocol");
    return 0;
}
