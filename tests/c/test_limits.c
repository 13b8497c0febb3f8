/* Limits and policies set from C, and the stats snapshot. */
#include "check.h"
#include "wsclient.h"

static void limits_apply_and_stats_count(void) {
    groupcast_config *config = test_config();
    CHECK_OK(groupcast_config_set_limit(config, GROUPCAST_LIMIT_MAX_MESSAGE_SIZE, 64));
    CHECK_OK(groupcast_config_set_limit(config, GROUPCAST_LIMIT_MAX_CONNECTIONS, 1));
    CHECK_OK(groupcast_config_set_slow_consumer(config, GROUPCAST_SLOW_CONSUMER_DROP));
    CHECK_OK(groupcast_config_set_channel_secret(config, STR("s3cret")));
    CHECK_RC(groupcast_config_set_limit(config, 999, 1), GROUPCAST_ERR_INVALID_ARGUMENT);
    CHECK_RC(groupcast_config_set_slow_consumer(config, 7), GROUPCAST_ERR_INVALID_ARGUMENT);

    /* A Redis bus together with an embedded channel server is refused. */
    groupcast_config *both = test_config();
    groupcast_server *refused = NULL;
    CHECK_OK(groupcast_config_set_bus(both, STR("redis://127.0.0.1:1")));
    CHECK_OK(groupcast_config_set_channel_listen(both, STR("127.0.0.1:0")));
    CHECK_RC(groupcast_server_start(both, &refused), GROUPCAST_ERR_CONFIG);
    CHECK(refused == NULL);
    groupcast_config_free(both);

    groupcast_server *server = NULL;
    CHECK_OK(groupcast_server_start(config, &server));
    int fd = ws_connect(server_port(server), "/", 5000);
    CHECK(fd >= 0);
    CHECK(ws_send_text(fd, "{\"cmd\":\"add_group\",\"group_id\":\"g\"}") == 0);
    CHECK(ws_send_text(fd, "{\"cmd\":\"send_to_group\",\"group_id\":\"g\",\"message\":\"hi\"}") == 0);
    ws_frame f = ws_recv(fd);
    CHECK(f.opcode == WS_TEXT && f.len == 2 && memcmp(f.data, "hi", 2) == 0);
    ws_frame_free(&f);

    /* The second connection is over the limit of 1: refused at the handshake. */
    CHECK(ws_connect(server_port(server), "/", 2000) < 0);

    /* A message over 64 bytes closes the connection with 1009. */
    char big[100];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    CHECK(ws_send_text(fd, big) == 0);
    for (;;) {
        f = ws_recv(fd);
        int opcode = f.opcode, code = f.close_code;
        ws_frame_free(&f);
        if (opcode == WS_CLOSE) {
            CHECK(code == 1009);
            break;
        }
        CHECK(opcode == WS_TEXT); /* the error reply comes first */
    }
    close(fd);

    groupcast_stats stats;
    WAIT_FOR(groupcast_server_stats(server, &stats) == GROUPCAST_OK && stats.connections == 0);
    CHECK(stats.connections_opened == 1);
    CHECK(stats.connections_refused == 1);
    CHECK(stats.messages_in == 2);
    CHECK(stats.messages_out >= 1);
    CHECK_RC(groupcast_server_stats(server, NULL), GROUPCAST_ERR_NULL_PARAMETER);
    CHECK_RC(groupcast_server_stats(NULL, &stats), GROUPCAST_ERR_NULL_PARAMETER);
    groupcast_server_free(server);
    groupcast_config_free(config);
}

int main(void) {
    limits_apply_and_stats_count();
    report("test_limits");
    return 0;
}
