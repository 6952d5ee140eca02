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

static _Thread_local void *sb_held_locks_slot = NULL;

void *sb_held_locks(void) {
    return sb_held_locks_slot;
}

void sb_set_held_locks(void *list) {
    sb_held_locks_slot = list;
}

static _Thread_local uintptr_t sb_job_submitter_slot = 0;

uintptr_t sb_job_submitter(void) {
    return sb_job_submitter_slot;
}

void sb_set_job_submitter(uintptr_t task) {
    sb_job_submitter_slot = task;
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
typedef __attribute__((swiftcall)) void *(*sb_current_task_function)(void);
static sb_current_task_function _Atomic sb_current_task = NULL;
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
        sb_current_task_function current_task = atomic_load(&sb_current_task);
        sample->task = current_task != NULL ? (uintptr_t)current_task() : 0;
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
    // Resolved here, not in the handler: dlsym is not async-signal-safe.
    atomic_store(&sb_current_task, (sb_current_task_function)dlsym(RTLD_DEFAULT, "swift_task_getCurrent"));
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
    sample->task = 0;
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

int sb_thread_schedstat(int32_t tid, uint64_t *running_ns, uint64_t *waiting_ns) {
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/task/%d/schedstat", tid);
    int file = open(path, O_RDONLY | O_CLOEXEC);
    if (file < 0) return -1;
    char buffer[128];
    ssize_t length = read(file, buffer, sizeof(buffer) - 1);
    close(file);
    if (length <= 0) return -1;
    buffer[length] = '\0';
    unsigned long long running = 0, waiting = 0;
    if (sscanf(buffer, "%llu %llu", &running, &waiting) != 2) return -1;
    *running_ns = running;
    *waiting_ns = waiting;
    return 0;
}

char sb_thread_state(int32_t tid) {
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/task/%d/stat", tid);
    int file = open(path, O_RDONLY | O_CLOEXEC);
    if (file < 0) return 0;
    char buffer[512];
    ssize_t length = read(file, buffer, sizeof(buffer) - 1);
    close(file);
    if (length <= 0) return 0;
    buffer[length] = '\0';
    // The state follows the name, which is in parentheses and may itself contain ") ".
    char *end = strrchr(buffer, ')');
    if (end == NULL || end[1] != ' ') return 0;
    return end[2];
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

// MARK: Redirecting the global executor's jobs (test-only per-job timing)

// The runtime's hook and job runner use the Swift calling convention.
typedef __attribute__((swiftcall)) void (*sb_enqueue_original)(void *job);
typedef __attribute__((swiftcall)) void (*sb_enqueue_hook)(void *job, sb_enqueue_original original);
typedef struct {
    void *identity;
    uintptr_t implementation;
} sb_serial_executor_ref;
typedef __attribute__((swiftcall)) void (*sb_job_run_function)(void *job, sb_serial_executor_ref executor);

static sb_job_sink _Atomic sb_sink = NULL;
static sb_enqueue_hook sb_previous_hook = NULL;
static int sb_hook_installed = 0;
static pthread_mutex_t sb_hook_mutex = PTHREAD_MUTEX_INITIALIZER;

__attribute__((swiftcall)) static void sb_enqueue_redirect(void *job, sb_enqueue_original original) {
    sb_job_sink sink = atomic_load(&sb_sink);
    if (sink != NULL) {
        sink(job);
    } else {
        original(job);
    }
}

static sb_enqueue_hook *sb_hook_slot(void) {
    return (sb_enqueue_hook *)dlsym(RTLD_DEFAULT, "swift_task_enqueueGlobal_hook");
}

int sb_global_enqueue_hook_install(sb_job_sink sink) {
    sb_enqueue_hook *slot = sb_hook_slot();
    if (slot == NULL) return ENOSYS;
    pthread_mutex_lock(&sb_hook_mutex);
    if (sb_hook_installed) {
        pthread_mutex_unlock(&sb_hook_mutex);
        return EBUSY;
    }
    atomic_store(&sb_sink, sink);
    sb_previous_hook = __atomic_exchange_n(slot, sb_enqueue_redirect, __ATOMIC_SEQ_CST);
    sb_hook_installed = 1;
    pthread_mutex_unlock(&sb_hook_mutex);
    return 0;
}

int sb_global_enqueue_hook_uninstall(void) {
    sb_enqueue_hook *slot = sb_hook_slot();
    if (slot == NULL) return ENOSYS;
    pthread_mutex_lock(&sb_hook_mutex);
    if (!sb_hook_installed) {
        pthread_mutex_unlock(&sb_hook_mutex);
        return ENOENT;
    }
    __atomic_store_n(slot, sb_previous_hook, __ATOMIC_SEQ_CST);
    // A hook call already under way still finds the sink and hands its job over.
    sb_hook_installed = 0;
    pthread_mutex_unlock(&sb_hook_mutex);
    return 0;
}

int sb_run_global_job(void *job) {
    static sb_job_run_function _Atomic cached = NULL;
    sb_job_run_function run = atomic_load(&cached);
    if (run == NULL) {
        run = (sb_job_run_function)dlsym(RTLD_DEFAULT, "swift_job_run");
        atomic_store(&cached, run);
    }
    if (run == NULL) return ENOSYS;
    sb_serial_executor_ref generic = {NULL, 0};
    run(job, generic);
    return 0;
}

static _Thread_local int sb_global_job_thread = 0;

void sb_set_runs_global_jobs(int value) {
    sb_global_job_thread = value;
}

int sb_runs_global_jobs(void) {
    return sb_global_job_thread;
}

// MARK: ThreadSanitizer annotations

// ThreadSanitizer's annotation entry points, weak: present only when its runtime is linked.
extern void __tsan_release(void *address) __attribute__((weak));
extern void __tsan_acquire(void *address) __attribute__((weak));

void sb_tsan_release(void *address) {
    if (__tsan_release) __tsan_release(address);
}

void sb_tsan_acquire(void *address) {
    if (__tsan_acquire) __tsan_acquire(address);
}
