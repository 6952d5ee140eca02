#define _GNU_SOURCE
#include "CSyncBridgeShims.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <execinfo.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <ucontext.h>
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

// MARK: Stack sampling

// The sample being taken: the thread that must answer, where it writes, and whether it did. Set
// by the one capturing thread before it sends SIGPROF; read by the handler on the target thread.
static _Atomic int32_t sb_sample_tid = 0;
static sb_stack_sample *_Atomic sb_sample_target = NULL;
static _Atomic int sb_sample_done = 0;
static struct sigaction sb_previous_sigprof;
static atomic_flag sb_sigprof_installed = ATOMIC_FLAG_INIT;

static void sb_sigprof_handler(int signal, siginfo_t *info, void *context) {
    int saved_errno = errno;
    sb_stack_sample *sample = atomic_load(&sb_sample_target);
    if (sample != NULL && atomic_load(&sb_sample_tid) == (int32_t)syscall(SYS_gettid)) {
        // backtrace() was called once at install time, so it allocates nothing here.
        sample->count = backtrace(sample->frames, SB_STACK_MAX_FRAMES);
        ucontext_t *machine = (ucontext_t *)context;
#if defined(__x86_64__)
        sample->interrupted_pc = (uintptr_t)machine->uc_mcontext.gregs[REG_RIP];
#elif defined(__aarch64__)
        sample->interrupted_pc = (uintptr_t)machine->uc_mcontext.pc;
#else
        sample->interrupted_pc = 0;
#endif
        const char *label = dispatch_queue_get_label(NULL);
        sample->cooperative = label != NULL && strcmp(label, "Swift global concurrent queue") == 0;
        atomic_store(&sb_sample_target, NULL);
        atomic_store(&sb_sample_done, 1);
    } else if (sb_previous_sigprof.sa_flags & SA_SIGINFO) {
        if (sb_previous_sigprof.sa_sigaction != NULL) sb_previous_sigprof.sa_sigaction(signal, info, context);
    } else if (sb_previous_sigprof.sa_handler != SIG_DFL && sb_previous_sigprof.sa_handler != SIG_IGN
               && sb_previous_sigprof.sa_handler != NULL) {
        sb_previous_sigprof.sa_handler(signal);
    }
    errno = saved_errno;
}

int sb_stack_capture_install(void) {
    if (atomic_flag_test_and_set(&sb_sigprof_installed)) return 0;
    // The first backtrace() loads the unwinder (and allocates): do it here, not in the handler.
    void *warm[4];
    (void)backtrace(warm, 4);
    struct sigaction action;
    memset(&action, 0, sizeof(action));
    action.sa_sigaction = sb_sigprof_handler;
    action.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&action.sa_mask);
    if (sigaction(SIGPROF, &action, &sb_previous_sigprof) != 0) return errno;
    return 0;
}

static int64_t sb_now_ns(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
}

int sb_stack_capture(int32_t tid, sb_stack_sample *sample, int64_t timeout_ns) {
    sample->tid = tid;
    sample->count = 0;
    sample->cooperative = 0;
    sample->interrupted_pc = 0;
    atomic_store(&sb_sample_done, 0);
    atomic_store(&sb_sample_tid, tid);
    atomic_store(&sb_sample_target, sample);
    if (syscall(SYS_tgkill, getpid(), tid, SIGPROF) != 0) {
        int error = errno;
        atomic_store(&sb_sample_target, NULL);
        return error;
    }
    int64_t deadline = sb_now_ns() + timeout_ns;
    struct timespec pause = {0, 20000};
    while (!atomic_load(&sb_sample_done)) {
        if (sb_now_ns() >= deadline) {
            // Withdraw the request; if the handler took it meanwhile, the sample is complete.
            sb_stack_sample *expected = sample;
            if (atomic_compare_exchange_strong(&sb_sample_target, &expected, NULL)) return ETIMEDOUT;
            while (!atomic_load(&sb_sample_done)) nanosleep(&pause, NULL);
            break;
        }
        nanosleep(&pause, NULL);
    }
    atomic_store(&sb_sample_tid, 0);
    return 0;
}

int32_t sb_backtrace(void **frames, int32_t capacity) {
    return backtrace(frames, capacity);
}

int32_t sb_list_threads(int32_t *tids, int32_t capacity) {
    DIR *directory = opendir("/proc/self/task");
    if (directory == NULL) return -1;
    int32_t count = 0;
    struct dirent *entry;
    while ((entry = readdir(directory)) != NULL) {
        if (entry->d_name[0] < '0' || entry->d_name[0] > '9') continue;
        if (count < capacity) tids[count] = (int32_t)atoi(entry->d_name);
        count += 1;
    }
    closedir(directory);
    return count;
}

int sb_thread_name(int32_t tid, char *buffer, size_t size) {
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/task/%d/comm", tid);
    int file = open(path, O_RDONLY | O_CLOEXEC);
    if (file < 0 || size == 0) return -1;
    ssize_t length = read(file, buffer, size - 1);
    close(file);
    if (length < 0) return -1;
    while (length > 0 && (buffer[length - 1] == '\n' || buffer[length - 1] == '\0')) length -= 1;
    buffer[length] = '\0';
    return 0;
}

int sb_describe_address(const void *address, const char **image, const void **image_base, const char **symbol,
                        const void **symbol_address) {
    Dl_info info;
    memset(&info, 0, sizeof(info));
    if (address == NULL || dladdr(address, &info) == 0) return 0;
    *image = info.dli_fname;
    *image_base = info.dli_fbase;
    *symbol = info.dli_sname;
    *symbol_address = info.dli_saddr;
    return 1;
}
