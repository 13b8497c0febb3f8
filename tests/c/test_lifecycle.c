/* Start/stop/free cycles, and bad arguments returning errors. */
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "wsclient.h"

static void start_stop_free_cycles(void) {
    groupcast_config *config = test_config();
    for (int i = 0; i < 20; i++) {
        groupcast_server *server = NULL;
        CHECK_OK(groupcast_server_start(config, &server));
        CHECK(server != NULL);
        CHECK(server_port(server) != 0);
        if (i % 2 == 0) {
            /* A client connected at stop gets 1001. */
            int fd = ws_connect(server_port(server), "/", 5000);
            CHECK(fd >= 0);
            size_t count = 0;
            WAIT_FOR(groupcast_server_connection_count(server, &count) == GROUPCAST_OK && count == 1);
            CHECK_OK(groupcast_server_stop(server));
            ws_frame f = ws_recv(fd);
            CHECK(f.opcode == WS_CLOSE);
            CHECK(f.close_code == 1001);
            ws_frame_free(&f);
            close(fd);
            /* A second stop is harmless and says so. */
            CHECK_RC(groupcast_server_stop(server), GROUPCAST_ERR_STOPPED);
        }
        /* Free stops a running server too. */
        groupcast_server_free(server);
    }
    groupcast_config_free(config);
}

static void null_arguments(void) {
    groupcast_server_free(NULL);
    groupcast_config_free(NULL);
    groupcast_groups_free(NULL);
    CHECK(groupcast_groups_count(NULL) == 0);

    CHECK_RC(groupcast_config_new(NULL), GROUPCAST_ERR_NULL_PARAMETER);
    CHECK_RC(groupcast_config_set_listen(NULL, STR("127.0.0.1:0")), GROUPCAST_ERR_NULL_PARAMETER);
    groupcast_config *config = test_config();
    CHECK_RC(groupcast_config_set_listen(config, NULL, 5), GROUPCAST_ERR_NULL_PARAMETER);
    CHECK_RC(groupcast_server_start(NULL, NULL), GROUPCAST_ERR_NULL_PARAMETER);
    CHECK_RC(groupcast_server_start(config, NULL), GROUPCAST_ERR_NULL_PARAMETER);
    CHECK_RC(groupcast_server_stop(NULL), GROUPCAST_ERR_NULL_PARAMETER);
    CHECK_RC(groupcast_server_send_text(NULL, 1, STR("x")), GROUPCAST_ERR_NULL_PARAMETER);

    char detail[128];
    groupcast_last_error_message(detail, sizeof detail, NULL);
    CHECK(strcmp(detail, "server is NULL") == 0);

    groupcast_server *server = NULL;
    CHECK_OK(groupcast_server_start(config, &server));
    CHECK_RC(groupcast_server_send_text(server, 1, NULL, 3), GROUPCAST_ERR_NULL_PARAMETER);
    CHECK_RC(groupcast_server_group_size(server, STR("g"), NULL), GROUPCAST_ERR_NULL_PARAMETER);
    CHECK_RC(groupcast_server_connection_count(server, NULL), GROUPCAST_ERR_NULL_PARAMETER);
    CHECK_RC(groupcast_server_send_to_group(server, STR("g"), STR("x"), NULL, 2, NULL),
             GROUPCAST_ERR_NULL_PARAMETER);
    /* NULL with length 0 is an empty string, and an empty exclude list. */
    size_t delivered = 99;
    CHECK_OK(groupcast_server_send_to_group(server, STR("g"), NULL, 0, NULL, 0, &delivered));
    CHECK(delivered == 0);
    groupcast_server_free(server);
    groupcast_config_free(config);
}

static void invalid_utf8(void) {
    const char bad[] = {'a', (char)0xff, 'b'};
    groupcast_config *config = test_config();
    CHECK_RC(groupcast_config_set_listen(config, bad, sizeof bad), GROUPCAST_ERR_INVALID_UTF8);
    groupcast_server *server = NULL;
    CHECK_OK(groupcast_server_start(config, &server));
    CHECK_RC(groupcast_server_send_text(server, 1, bad, sizeof bad), GROUPCAST_ERR_INVALID_UTF8);
    CHECK_RC(groupcast_server_join(server, 1, bad, sizeof bad, NULL), GROUPCAST_ERR_INVALID_UTF8);
    CHECK_RC(groupcast_server_send_to_group(server, bad, sizeof bad, STR("x"), NULL, 0, NULL),
             GROUPCAST_ERR_INVALID_UTF8);
    CHECK_RC(groupcast_server_close(server, 1, 1000, bad, sizeof bad), GROUPCAST_ERR_INVALID_UTF8);
    /* Binary data is not text: any bytes go (to an unknown connection here). */
    CHECK_RC(groupcast_server_send_binary(server, 1, (const uint8_t *)bad, sizeof bad),
             GROUPCAST_ERR_UNKNOWN_CONNECTION);
    groupcast_server_free(server);
    groupcast_config_free(config);
}

static void unknown_connection_and_bad_values(void) {
    groupcast_config *config = test_config();
    groupcast_server *server = NULL;
    CHECK_OK(groupcast_server_start(config, &server));
    CHECK_RC(groupcast_server_send_text(server, 12345, STR("hi")), GROUPCAST_ERR_UNKNOWN_CONNECTION);
    bool joined = true;
    CHECK_RC(groupcast_server_join(server, 12345, STR("g"), &joined), GROUPCAST_ERR_UNKNOWN_CONNECTION);
    CHECK(joined == true); /* out-params are written only on success */
    CHECK_RC(groupcast_server_leave(server, 12345, STR("g"), NULL), GROUPCAST_ERR_UNKNOWN_CONNECTION);
    CHECK_RC(groupcast_server_admit(server, 12345), GROUPCAST_ERR_UNKNOWN_CONNECTION);
    CHECK_RC(groupcast_server_close(server, 12345, 1000, STR("bye")), GROUPCAST_ERR_UNKNOWN_CONNECTION);
    char detail[128];
    groupcast_last_error_message(detail, sizeof detail, NULL);
    CHECK(strcmp(detail, "no open connection with id 12345") == 0);
    CHECK_RC(groupcast_server_close(server, 12345, 1005, NULL, 0), GROUPCAST_ERR_INVALID_CLOSE_CODE);
    CHECK_RC(groupcast_server_send_to_group(server, NULL, 0, STR("x"), NULL, 0, NULL),
             GROUPCAST_ERR_INVALID_GROUP);
    /* No channel server configured. */
    CHECK_RC(groupcast_server_channel_publish(server, STR("news"), STR("{}")), GROUPCAST_ERR_CHANNEL);
    /* No events asked for: nothing to poll. */
    groupcast_event events[4];
    size_t count = 0;
    CHECK_RC(groupcast_server_poll(server, 0, events, 4, &count), GROUPCAST_ERR_MODE);
    int fd = -1;
    CHECK_RC(groupcast_server_notify_fd(server, &fd), GROUPCAST_ERR_MODE);

    char buf[4];
    CHECK_RC(groupcast_server_websocket_address(server, buf, sizeof buf, NULL),
             GROUPCAST_ERR_BUFFER_TOO_SMALL);
    char addr[64] = "unchanged";
    size_t len = 7;
    CHECK_OK(groupcast_server_channel_address(server, addr, sizeof addr, &len));
    CHECK(len == 0 && addr[0] == '\0');

    /* After stop, actions say so; addresses stay readable. */
    CHECK_OK(groupcast_server_stop(server));
    CHECK_RC(groupcast_server_stop(server), GROUPCAST_ERR_STOPPED);
    CHECK_RC(groupcast_server_send_text(server, 1, STR("hi")), GROUPCAST_ERR_STOPPED);
    CHECK_RC(groupcast_server_connection_count(server, &count), GROUPCAST_ERR_STOPPED);
    CHECK(server_port(server) != 0);
    groupcast_server_free(server);
    groupcast_config_free(config);
}

static void on_close_noop(void *userdata, groupcast_server *server, const groupcast_event *event) {
    (void)userdata;
    (void)server;
    (void)event;
}

static void bind_conflict_names_the_address(void) {
    groupcast_config *config = test_config();
    groupcast_server *first = NULL;
    CHECK_OK(groupcast_server_start(config, &first));
    char addr[64];
    CHECK_OK(groupcast_server_websocket_address(first, addr, sizeof addr, NULL));
    CHECK_OK(groupcast_config_set_listen(config, addr, strlen(addr)));
    groupcast_server *second = (groupcast_server *)&second; /* must stay as is */
    CHECK_RC(groupcast_server_start(config, &second), GROUPCAST_ERR_BIND);
    CHECK(second == (groupcast_server *)&second);
    char detail[256];
    groupcast_last_error_message(detail, sizeof detail, NULL);
    CHECK(strstr(detail, addr) != NULL);
    groupcast_server_free(first);

    /* Both channel options at once is a configuration error. */
    CHECK_OK(groupcast_config_set_listen(config, STR("127.0.0.1:0")));
    CHECK_OK(groupcast_config_set_channel_listen(config, STR("127.0.0.1:0")));
    CHECK_OK(groupcast_config_set_channel(config, STR("127.0.0.1:2206")));
    CHECK_RC(groupcast_server_start(config, &second), GROUPCAST_ERR_CONFIG);
    CHECK_RC(groupcast_config_set_events(config, 1u << 10), GROUPCAST_ERR_INVALID_ARGUMENT);
    groupcast_config_free(config);

    /* Callbacks with built-ins off need on_message: messages would be lost. */
    config = test_config();
    CHECK_OK(groupcast_config_set_builtin_commands(config, false));
    CHECK_OK(groupcast_config_on_close(config, on_close_noop, NULL, NULL));
    CHECK_RC(groupcast_server_start(config, &second), GROUPCAST_ERR_CONFIG);
    groupcast_config_free(config);
}

static void messages_and_version(void) {
    char msg[256];
    size_t len = 0;
    groupcast_result_message(GROUPCAST_ERR_UNKNOWN_CONNECTION, msg, sizeof msg, &len);
    CHECK(strcmp(msg, "no open connection with this id") == 0 && len == strlen(msg));
    groupcast_result_message(9999, msg, sizeof msg, NULL);
    CHECK(strcmp(msg, "unknown result code 9999") == 0);
    /* Cut to the buffer, still NUL-terminated. */
    groupcast_result_message(GROUPCAST_ERR_UNKNOWN_CONNECTION, msg, 5, &len);
    CHECK(strcmp(msg, "no o") == 0 && len == 4);
    char version[32];
    snprintf(version, sizeof version, "%d.%d.%d", GROUPCAST_VERSION_MAJOR, GROUPCAST_VERSION_MINOR,
             GROUPCAST_VERSION_PATCH);
    CHECK(strcmp(groupcast_version(), version) == 0);
}


static void on_sigpipe(int sig) { (void)sig; }

/* SIGPIPE left at its default kills the host when a client closes during
 * a vectored write: starting a server ignores it then, and keeps a
 * handler the host installed (checked in a child process, whose signal
 * dispositions are its own). Runs first: nothing has started yet. */
static void sigpipe_is_ignored_unless_the_host_handles_it(void) {
    /* A C program starts with the default (unless its parent ignored it). */
    signal(SIGPIPE, SIG_DFL);
    struct sigaction current;
    pid_t child = fork();
    CHECK(child >= 0);
    if (child == 0) {
        signal(SIGPIPE, on_sigpipe);
        groupcast_config *config = test_config();
        groupcast_server *server = NULL;
        int ok = groupcast_server_start(config, &server) == GROUPCAST_OK;
        struct sigaction after;
        ok = ok && sigaction(SIGPIPE, NULL, &after) == 0 && after.sa_handler == on_sigpipe;
        groupcast_server_free(server);
        groupcast_config_free(config);
        _exit(ok ? 0 : 1);
    }
    int status = 0;
    CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0);

    groupcast_config *config = test_config();
    groupcast_server *server = NULL;
    CHECK_OK(groupcast_server_start(config, &server));
    CHECK(sigaction(SIGPIPE, NULL, &current) == 0 && current.sa_handler == SIG_IGN);
    groupcast_server_free(server);
    groupcast_config_free(config);
}

int main(void) {
    sigpipe_is_ignored_unless_the_host_handles_it();
    start_stop_free_cycles();
    null_arguments();
    invalid_utf8();
    unknown_connection_and_bad_values();
    bind_conflict_names_the_address();
    messages_and_version();
    report("test_lifecycle");
    return 0;
}
