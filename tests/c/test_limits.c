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

/* A plain `GET path` (no upgrade) on the websocket port: the status, and the
 * whole response in `out`. */
static int plain_get(uint16_t port, const char *path, char *out, size_t size) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(fd >= 0);
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(connect(fd, (struct sockaddr *)&addr, sizeof addr) == 0);
    char request[256];
    int n = snprintf(request, sizeof request, "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", path);
    CHECK(n > 0 && ws_write_all(fd, request, (size_t)n) == 0);
    int status = ws_read_refusal(fd, out, size);
    close(fd);
    return status;
}

/* The demo page: off by default (426), on with set_demo_page (GET / is the
 * page, another path 404). */
static void demo_page_only_when_asked(void) {
    static char response[16384];
    CHECK_RC(groupcast_config_set_demo_page(NULL, true), GROUPCAST_ERR_NULL_PARAMETER);
    for (int on = 0; on <= 1; on++) {
        groupcast_config *config = test_config();
        if (on) CHECK_OK(groupcast_config_set_demo_page(config, true));
        groupcast_server *server = NULL;
        CHECK_OK(groupcast_server_start(config, &server));
        uint16_t port = server_port(server);
        CHECK(plain_get(port, "/", response, sizeof response) == (on ? 200 : 426));
        CHECK(on == (strstr(response, "id=\"send\"") != NULL));
        CHECK(plain_get(port, "/other", response, sizeof response) == (on ? 404 : 426));
        int fd = ws_connect(port, "/", 5000);
        CHECK(fd >= 0);
        close(fd);
        groupcast_server_free(server);
        groupcast_config_free(config);
    }
}

int main(void) {
    limits_apply_and_stats_count();
    demo_page_only_when_asked();
    report("test_limits");
    return 0;
}
