/* Assertions and helpers shared by the C tests. */
#ifndef GROUPCAST_TEST_CHECK_H
#define GROUPCAST_TEST_CHECK_H

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "groupcast.h"

static int checks_passed;

#define CHECK(cond)                                                        \
    do {                                                                   \
        if (!(cond)) {                                                     \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
            exit(1);                                                       \
        }                                                                  \
        checks_passed++;                                                   \
    } while (0)

/* Checks that a call returned `expected`, printing the library's message
 * and details otherwise. */
#define CHECK_RC(call, expected)                                           \
    do {                                                                   \
        groupcast_result rc_ = (call);                                     \
        if (rc_ != (expected)) {                                           \
            char msg_[256], detail_[256];                                  \
            groupcast_result_message(rc_, msg_, sizeof msg_, NULL);        \
            groupcast_last_error_message(detail_, sizeof detail_, NULL);   \
            fprintf(stderr, "%s:%d: %s returned %u (%s: %s), expected %s\n", __FILE__, \
                    __LINE__, #call, (unsigned)rc_, msg_, detail_, #expected);          \
            exit(1);                                                       \
        }                                                                  \
        checks_passed++;                                                   \
    } while (0)

#define CHECK_OK(call) CHECK_RC(call, GROUPCAST_OK)

#define STR(s) (s), strlen(s)

static inline void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Waits up to 5 s for `cond` to become true. */
#define WAIT_FOR(cond)                                                     \
    do {                                                                   \
        int waited_ = 0;                                                   \
        while (!(cond) && waited_ < 5000) {                                \
            sleep_ms(5);                                                   \
            waited_ += 5;                                                  \
        }                                                                  \
        CHECK(cond);                                                       \
    } while (0)

/* A config for tests: loopback, a free port, no channel server, 2 workers. */
static inline groupcast_config *test_config(void) {
    groupcast_config *config = NULL;
    CHECK_OK(groupcast_config_new(&config));
    CHECK_OK(groupcast_config_set_listen(config, STR("127.0.0.1:0")));
    CHECK_OK(groupcast_config_set_channel_listen(config, NULL, 0));
    CHECK_OK(groupcast_config_set_workers(config, 2));
    return config;
}

/* The websocket port the server listens on. */
static inline unsigned short server_port(const groupcast_server *server) {
    char addr[64];
    size_t len = 0;
    CHECK_OK(groupcast_server_websocket_address(server, addr, sizeof addr, &len));
    CHECK(len == strlen(addr));
    const char *colon = strrchr(addr, ':');
    CHECK(colon != NULL);
    return (unsigned short)atoi(colon + 1);
}

static inline void report(const char *name) {
    printf("%s: %d checks passed\n", name, checks_passed);
}

#endif
