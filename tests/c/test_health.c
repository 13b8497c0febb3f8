/* Health from C, and freeing a server while a callback is running. */
#include <pthread.h>
#include <unistd.h>

#include "check.h"
#include "wsclient.h"

static void health_reports_the_bus(void) {
    char report[512];
    size_t len = 0;
    bool ok = false;

    /* A single node has no bus to lose: ok. */
    groupcast_config *config = test_config();
    groupcast_server *server = NULL;
    CHECK_OK(groupcast_server_start(config, &server));
    CHECK_OK(groupcast_server_health(server, &ok, report, sizeof report, &len));
    CHECK(ok);
    CHECK(len == strlen(report));
    CHECK(strcmp(report, "{\"status\":\"ok\",\"bus\":\"none\",\"connections\":0}") == 0);
    /* Too small a buffer: nothing written, the verdict untouched. */
    ok = false;
    CHECK_RC(groupcast_server_health(server, &ok, report, 8, NULL), GROUPCAST_ERR_BUFFER_TOO_SMALL);
    CHECK(!ok);
    /* After stop: unavailable, saying why. */
    CHECK_OK(groupcast_server_stop(server));
    CHECK_OK(groupcast_server_health(server, &ok, report, sizeof report, NULL));
    CHECK(!ok);
    CHECK(strstr(report, "\"status\":\"unavailable\"") != NULL);
    CHECK(strstr(report, "stopped") != NULL);
    groupcast_server_free(server);

    /* A node whose channel server is unreachable is not healthy. */
    CHECK_OK(groupcast_config_set_channel(config, STR("127.0.0.1:1")));
    CHECK_OK(groupcast_server_start(config, &server));
    WAIT_FOR(groupcast_server_health(server, &ok, report, sizeof report, NULL) == GROUPCAST_OK &&
             strstr(report, "cannot connect") != NULL);
    CHECK(!ok);
    CHECK(strstr(report, "\"bus\":\"disconnected\"") != NULL);
    CHECK(strstr(report, "the channel bus is down") != NULL);
    groupcast_stats stats;
    CHECK_OK(groupcast_server_stats(server, &stats));
    CHECK(stats.bus_connected == 0);
    CHECK(stats.bus_connect_attempts >= 1);
    groupcast_server_free(server);
    groupcast_config_free(config);
}

/* The callback runs for a while; free, called meanwhile from another
 * thread, must wait for it and release nothing it still uses. */
static atomic_int in_callback;
static atomic_int callback_done;

static void slow_on_message(void *userdata, groupcast_server *server, const groupcast_event *event) {
    (void)userdata;
    (void)event;
    atomic_store(&in_callback, 1);
    sleep_ms(300);
    /* The server is still valid here: stats read its memory. */
    groupcast_stats stats;
    groupcast_server_stats(server, &stats);
    atomic_store(&callback_done, 1);
}

static void free_while_a_callback_runs(void) {
    groupcast_config *config = test_config();
    CHECK_OK(groupcast_config_set_builtin_commands(config, false));
    CHECK_OK(groupcast_config_on_message(config, slow_on_message, NULL, NULL));
    groupcast_server *server = NULL;
    CHECK_OK(groupcast_server_start(config, &server));
    int fd = ws_connect(server_port(server), "/", 5000);
    CHECK(fd >= 0);
    CHECK(ws_send_text(fd, "hello") == 0);
    WAIT_FOR(atomic_load(&in_callback) == 1);
    groupcast_server_free(server);
    CHECK(atomic_load(&callback_done) == 1);
    close(fd);
    groupcast_config_free(config);
}

int main(void) {
    health_reports_the_bus();
    free_while_a_callback_runs();
    report("test_health");
    return 0;
}
