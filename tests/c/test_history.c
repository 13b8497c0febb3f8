/* Group history from C: the limits, the offset a send returns, the
 * history snapshot, and a client recovering what it missed. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "wsclient.h"

/* Reads the next text frame into `out` (NUL-terminated). */
static void recv_text(int fd, char *out, size_t size) {
    ws_frame f = ws_recv(fd);
    CHECK(f.opcode == WS_TEXT && f.len < size);
    memcpy(out, f.data, f.len);
    out[f.len] = '\0';
    ws_frame_free(&f);
}

/* A client that saw offset 1 of `g` rejoins with `since` on the server at
 * `port`: it is told it recovered `missed` messages, then gets m2, m3, ...
 * with their offsets, in order. */
static void rejoin_after_offset_one(unsigned short port, const char *epoch, int missed) {
    char rejoin[256];
    snprintf(rejoin, sizeof rejoin,
             "{\"cmd\":\"add_group\",\"group_id\":\"g\",\"since\":{\"offset\":1,\"epoch\":\"%s\"}}",
             epoch);
    int fd = ws_connect(port, "/", 5000);
    CHECK(fd >= 0);
    CHECK(ws_send_text(fd, rejoin) == 0);
    char text[512];
    char want[64];
    recv_text(fd, text, sizeof text);
    snprintf(want, sizeof want, "\"missed\":%d", missed);
    CHECK(strstr(text, "\"recovered\":true") && strstr(text, want));
    for (int offset = 2; offset < 2 + missed; offset++) {
        recv_text(fd, text, sizeof text);
        snprintf(want, sizeof want, "\"offset\":%d,\"message\":\"m%d\"", offset, offset);
        CHECK(strstr(text, want));
    }
    close(fd);
}

static void history_off_by_default(void) {
    groupcast_config *config = test_config();
    groupcast_server *server = NULL;
    CHECK_OK(groupcast_server_start(config, &server));
    size_t delivered = 9;
    uint64_t offset = 9;
    CHECK_OK(groupcast_server_send_to_group_with_offset(server, STR("g"), STR("x"), NULL, 0,
                                                        &delivered, &offset));
    CHECK(delivered == 0 && offset == 0);
    groupcast_history *history = NULL;
    CHECK_RC(groupcast_server_history(server, STR("g"), 0, 100, &history), GROUPCAST_ERR_CONFIG);
    CHECK(history == NULL);
    groupcast_server_free(server);
    groupcast_config_free(config);

    groupcast_config *zero = test_config();
    CHECK_OK(groupcast_config_set_limit(zero, GROUPCAST_LIMIT_HISTORY_SIZE, 0));
    CHECK_RC(groupcast_server_start(zero, &server), GROUPCAST_ERR_CONFIG);
    groupcast_config_free(zero);
}

static void offsets_history_and_recovery(void) {
    groupcast_config *config = test_config();
    CHECK_OK(groupcast_config_set_limit(config, GROUPCAST_LIMIT_HISTORY_SIZE, 10));
    CHECK_OK(groupcast_config_set_limit(config, GROUPCAST_LIMIT_HISTORY_TTL_MS, 60000));
    CHECK_OK(groupcast_config_set_limit(config, GROUPCAST_LIMIT_HISTORY_MAX_BYTES, 1 << 20));
    groupcast_server *server = NULL;
    CHECK_OK(groupcast_server_start(config, &server));

    int fd = ws_connect(server_port(server), "/", 5000);
    CHECK(fd >= 0);
    CHECK(ws_send_text(fd, "{\"cmd\":\"add_group\",\"group_id\":\"g\",\"positions\":true}") == 0);
    char text[512];
    recv_text(fd, text, sizeof text);
    CHECK(strstr(text, "\"type\":\"joined\"") && strstr(text, "\"offset\":0"));
    close(fd);

    for (int i = 1; i <= 4; i++) {
        char message[16];
        int n = snprintf(message, sizeof message, "m%d", i);
        uint64_t offset = 0;
        CHECK_OK(groupcast_server_send_to_group_with_offset(server, STR("g"), message, (size_t)n,
                                                            NULL, 0, NULL, &offset));
        CHECK(offset == (uint64_t)i);
    }

    groupcast_history *history = NULL;
    CHECK_OK(groupcast_server_history(server, STR("g"), 2, 100, &history));
    CHECK(groupcast_history_count(history) == 2);
    uint64_t offset = 0;
    const char *message = NULL;
    size_t len = 0;
    CHECK_OK(groupcast_history_get(history, 0, &offset, &message, &len));
    CHECK(offset == 3 && len == 2 && memcmp(message, "m3", 2) == 0);
    CHECK_RC(groupcast_history_get(history, 2, &offset, &message, &len),
             GROUPCAST_ERR_INVALID_ARGUMENT);
    const char *epoch = NULL;
    size_t epoch_len = 0;
    CHECK_OK(groupcast_history_epoch(history, &epoch, &epoch_len));
    CHECK(epoch_len > 0 && epoch_len < 64 && strlen(epoch) == epoch_len);

    /* A client that saw offset 1 rejoins with `since`: it gets 2, 3, 4. */
    rejoin_after_offset_one(server_port(server), epoch, 3);
    groupcast_history_free(history);
    groupcast_history_free(NULL);
    CHECK(groupcast_history_count(NULL) == 0);

    groupcast_stats stats;
    CHECK_OK(groupcast_server_stats(server, &stats));
    CHECK(stats.history_recovered == 1 && stats.history_bytes > 0);
    groupcast_server_free(server);
    groupcast_config_free(config);
}

/* A free loopback port (nobody listens on it now). */
static unsigned short free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = 0};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    CHECK(bind(fd, (struct sockaddr *)&addr, sizeof addr) == 0);
    CHECK(getsockname(fd, (struct sockaddr *)&addr, &len) == 0);
    close(fd);
    return ntohs(addr.sin_port);
}

/* Whether something accepts connections on the loopback `port`. */
static int listening(unsigned short port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int ok = connect(fd, (struct sockaddr *)&addr, sizeof addr) == 0;
    close(fd);
    return ok;
}

static groupcast_server *redis_history_server(const char *url) {
    groupcast_config *config = test_config();
    CHECK_OK(groupcast_config_set_bus(config, STR(url)));
    CHECK_OK(groupcast_config_set_limit(config, GROUPCAST_LIMIT_HISTORY_SIZE, 10));
    groupcast_server *server = NULL;
    CHECK_OK(groupcast_server_start(config, &server));
    groupcast_config_free(config);
    groupcast_stats stats = {0};
    WAIT_FOR((groupcast_server_stats(server, &stats), stats.bus_connected == 1));
    return server;
}

/* Two servers on a redis-server of the test's own (skipped when
 * redis-server is not installed): Redis numbers the messages, a send
 * returns Redis's offset, and a client recovers on the other server. */
static void history_on_a_redis_bus(void) {
    if (system("command -v redis-server >/dev/null 2>&1") != 0) {
        printf("test_history: redis-server not installed, Redis case skipped\n");
        return;
    }
    unsigned short port = free_port();
    char port_text[16];
    snprintf(port_text, sizeof port_text, "%u", port);
    pid_t redis = fork();
    CHECK(redis >= 0);
    if (redis == 0) {
        int null = open("/dev/null", O_WRONLY);
        dup2(null, STDOUT_FILENO);
        dup2(null, STDERR_FILENO);
        execlp("redis-server", "redis-server", "--port", port_text, "--bind", "127.0.0.1",
               "--save", "", "--appendonly", "no", "--dir", "/tmp", (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 250 && !listening(port); i++) usleep(20000);
    CHECK(listening(port));
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%u", port);
    groupcast_server *a = redis_history_server(url);
    groupcast_server *b = redis_history_server(url);

    int fd = ws_connect(server_port(a), "/", 5000);
    CHECK(fd >= 0);
    CHECK(ws_send_text(fd, "{\"cmd\":\"add_group\",\"group_id\":\"g\",\"positions\":true}") == 0);
    char text[512];
    recv_text(fd, text, sizeof text);
    CHECK(strstr(text, "\"type\":\"joined\"") && strstr(text, "\"offset\":0"));
    close(fd);
    for (int i = 1; i <= 3; i++) {
        char message[16];
        int n = snprintf(message, sizeof message, "m%d", i);
        uint64_t offset = 0;
        CHECK_OK(groupcast_server_send_to_group_with_offset(b, STR("g"), message, (size_t)n, NULL,
                                                            0, NULL, &offset));
        CHECK(offset == (uint64_t)i);
    }
    groupcast_history *history = NULL;
    CHECK_OK(groupcast_server_history(a, STR("g"), 1, 100, &history));
    CHECK(groupcast_history_count(history) == 2);
    uint64_t offset = 0;
    const char *message = NULL;
    size_t len = 0;
    CHECK_OK(groupcast_history_get(history, 0, &offset, &message, &len));
    CHECK(offset == 2 && len == 2 && memcmp(message, "m2", 2) == 0);
    const char *epoch = NULL;
    size_t epoch_len = 0;
    CHECK_OK(groupcast_history_epoch(history, &epoch, &epoch_len));

    /* Back on the other server after offset 1: it gets 2 and 3. */
    rejoin_after_offset_one(server_port(b), epoch, 2);
    groupcast_history_free(history);
    groupcast_server_free(a);
    groupcast_server_free(b);
    kill(redis, SIGKILL);
    waitpid(redis, NULL, 0);
}

/* On a channel-server bus (here the embedded one) the channel server
 * numbers a send without answering it: the offset is 0 ("none"), as from
 * Rust and Python, and the history comes from the channel server. */
static void channel_server_bus_gives_no_offset(void) {
    groupcast_config *config = test_config();
    CHECK_OK(groupcast_config_set_channel_listen(config, STR("127.0.0.1:0")));
    CHECK_OK(groupcast_config_set_limit(config, GROUPCAST_LIMIT_HISTORY_SIZE, 10));
    groupcast_server *server = NULL;
    CHECK_OK(groupcast_server_start(config, &server));
    groupcast_config_free(config);
    groupcast_stats stats = {0};
    WAIT_FOR((groupcast_server_stats(server, &stats), stats.bus_connected == 1));
    int fd = ws_connect(server_port(server), "/", 5000);
    CHECK(fd >= 0);
    CHECK(ws_send_text(fd, "{\"cmd\":\"add_group\",\"group_id\":\"g\",\"positions\":true}") == 0);
    char text[512];
    recv_text(fd, text, sizeof text);
    CHECK(strstr(text, "\"type\":\"joined\""));
    uint64_t offset = 9;
    size_t delivered = 9;
    CHECK_OK(groupcast_server_send_to_group_with_offset(server, STR("g"), STR("x"), NULL, 0,
                                                        &delivered, &offset));
    CHECK(offset == 0 && delivered == 0);
    recv_text(fd, text, sizeof text);
    CHECK(strstr(text, "\"offset\":1,\"message\":\"x\""));
    close(fd);
    groupcast_history *history = NULL;
    CHECK_OK(groupcast_server_history(server, STR("g"), 0, 100, &history));
    CHECK(groupcast_history_count(history) == 1);
    groupcast_history_free(history);
    groupcast_server_free(server);
}

int main(void) {
    history_off_by_default();
    offsets_history_and_recovery();
    channel_server_bus_gives_no_offset();
    history_on_a_redis_bus();
    report("test_history");
    return 0;
}
