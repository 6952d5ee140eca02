#define _GNU_SOURCE
#include "CSyncBridgeShims.h"

#include <errno.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

// libdispatch is part of every Swift runtime on Linux; declaring the one function we need
// avoids depending on where the toolchain keeps <dispatch/dispatch.h>.
extern const char *dispatch_queue_get_label(void *queue);

int32_t sb_gettid(void) {
    return (int32_t)syscall(SYS_gettid);
}

int sb_set_current_thread_name(const char *name) {
    char truncated[16];
    strncpy(truncated, name, sizeof(truncated) - 1);
    truncated[sizeof(truncated) - 1] = '\0';
    return pthread_setname_np(pthread_self(), truncated);
}

int sb_get_current_thread_name(char *buffer, size_t size) {
    return pthread_getname_np(pthread_self(), buffer, size);
}

const char *sb_current_dispatch_queue_label(void) {
    // DISPATCH_CURRENT_QUEUE_LABEL is NULL.
    return dispatch_queue_get_label(NULL);
}

static _Thread_local void *sb_worker_slot = NULL;

void *sb_current_worker(void) {
    return sb_worker_slot;
}

void sb_set_current_worker(void *worker) {
    sb_worker_slot = worker;
}

int sb_thread_create(pthread_t *thread, void *(*body)(void *), void *context, size_t stack_size) {
    pthread_attr_t attributes;
    int result = pthread_attr_init(&attributes);
    if (result != 0) {
        return result;
    }
    if (stack_size > 0) {
        result = pthread_attr_setstacksize(&attributes, stack_size);
        if (result != 0) {
            pthread_attr_destroy(&attributes);
            return result;
        }
    }
    result = pthread_create(thread, &attributes, body, context);
    pthread_attr_destroy(&attributes);
    return result;
}
