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

static uint64_t refused(const groupcast_channel_server *channel) {
    groupcast_stats stats;
    CHECK_OK(groupcast_channel_server_stats(channel, &stats));
    return stats.channel_refused;
}

/* A PHP client that sends a serialized object is closed and counted; the
 * count stays readable after stop. */
static void a_standalone_channel_server_counts_refused_php_objects(void) {
    groupcast_channel_server *channel = NULL;
    CHECK_OK(groupcast_channel_server_start(STR("127.0.0.1:0"), NULL, 0, &channel));
    char addr[64];
    size_t len = 0;
    CHECK_OK(groupcast_channel_server_address(channel, addr, sizeof addr, &len));
    CHECK(refused(channel) == 0);
    int fd = ws_tcp_connect((uint16_t)atoi(strrchr(addr, ':') + 1), 5000);
    CHECK(fd >= 0);
    const char body[] = "a:3:{s:4:\"type\";s:7:\"publish\";s:8:\"channels\";a:1:{i:0;s:1:\"c\";}"
                        "s:4:\"data\";O:8:\"stdClass\":0:{}}";
    unsigned char header[4];
    uint32_t frame_len = (uint32_t)(sizeof body - 1 + 4);
    header[0] = (unsigned char)(frame_len >> 24);
    header[1] = (unsigned char)(frame_len >> 16);
    header[2] = (unsigned char)(frame_len >> 8);
    header[3] = (unsigned char)frame_len;
    CHECK(ws_write_all(fd, header, 4) == 0 && ws_write_all(fd, body, sizeof body - 1) == 0);
    char byte;
    CHECK(read(fd, &byte, 1) <= 0); /* closed */
    close(fd);
    WAIT_FOR(refused(channel) == 1);
    CHECK_OK(groupcast_channel_server_stop(channel));
    CHECK(refused(channel) == 1);
    groupcast_channel_server_free(channel);
}

int main(void) {
    unknown_protocols_are_refused_by_the_setter();
    a_workerman_node_subscribes_to_send_to_group_only();
    a_standalone_channel_server_counts_refused_php_objects();
    report("test_channel_protocol");
    return 0;
}
