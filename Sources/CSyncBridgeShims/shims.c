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

static _Thread_local void *sb_io_thread_slot = NULL;

void *sb_current_io_thread(void) {
    return sb_io_thread_slot;
}

void sb_set_current_io_thread(void *thread) {
    sb_io_thread_slot = thread;
}

static _Thread_local void *sb_held_locks_slot = NULL;

void *sb_held_locks(void) {
    return sb_held_locks_slot;
}

void sb_set_held_locks(void *list) {
    sb_held_locks_slot = list;
}

static _Thread_local void *sb_guarded_thread_slot = NULL;

void *sb_guarded_thread(void) {
    return sb_guarded_thread_slot;
}

void sb_set_guarded_thread(void *description) {
    sb_guarded_thread_slot = description;
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

// The batch being taken. The one capturing thread writes each slot's thread id and state, then
// publishes `sb_batch`; the handler, on each target thread, finds its slot and moves it from
// requested to writing to done. A slot the capturer gives up on moves from requested to withdrawn,
// so that a late handler never writes into a sample its caller has freed; the capturer also waits
// until no handler still holds the batch it clears.
typedef __attribute__((swiftcall)) void *(*sb_current_task_function)(void);
static sb_current_task_function _Atomic sb_current_task = NULL;
enum { SB_SLOT_REQUESTED = 1, SB_SLOT_WRITING = 2, SB_SLOT_DONE = 3, SB_SLOT_WITHDRAWN = 4 };
static int32_t sb_slot_tid[SB_STACK_BATCH_MAX];
static _Atomic int sb_slot_state[SB_STACK_BATCH_MAX];
static sb_stack_sample *_Atomic sb_batch = NULL;
static _Atomic int32_t sb_batch_count = 0;
static _Atomic int sb_handlers_active = 0;
static struct sigaction sb_previous_sigprof;
static atomic_flag sb_sigprof_installed = ATOMIC_FLAG_INIT;

static void sb_fill_sample(sb_stack_sample *sample, void *context) {
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
}

static void sb_sigprof_handler(int signal, siginfo_t *info, void *context) {
    int saved_errno = errno;
    int handled = 0;
    atomic_fetch_add(&sb_handlers_active, 1);
    sb_stack_sample *batch = atomic_load(&sb_batch);
    if (batch != NULL) {
        int32_t self = (int32_t)syscall(SYS_gettid);
        int32_t count = atomic_load(&sb_batch_count);
        for (int32_t index = 0; index < count; index++) {
            if (sb_slot_tid[index] != self) continue;
            handled = 1;
            int expected = SB_SLOT_REQUESTED;
            if (atomic_compare_exchange_strong(&sb_slot_state[index], &expected, SB_SLOT_WRITING)) {
                sb_fill_sample(&batch[index], context);
                atomic_store(&sb_slot_state[index], SB_SLOT_DONE);
            }
            break;
        }
    }
    atomic_fetch_sub(&sb_handlers_active, 1);
    if (!handled) {
        if (sb_previous_sigprof.sa_flags & SA_SIGINFO) {
            if (sb_previous_sigprof.sa_sigaction != NULL) sb_previous_sigprof.sa_sigaction(signal, info, context);
        } else if (sb_previous_sigprof.sa_handler != SIG_DFL && sb_previous_sigprof.sa_handler != SIG_IGN
                   && sb_previous_sigprof.sa_handler != NULL) {
            sb_previous_sigprof.sa_handler(signal);
        }
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

int sb_stack_capture(const int32_t *tids, sb_stack_sample *samples, int32_t *results, int32_t count,
                     int64_t timeout_ns) {
    if (count < 0 || count > SB_STACK_BATCH_MAX) return EINVAL;
    for (int32_t index = 0; index < count; index++) {
        samples[index].tid = tids[index];
        samples[index].count = 0;
        samples[index].cooperative = 0;
        samples[index].interrupted_pc = 0;
        samples[index].task = 0;
        sb_slot_tid[index] = tids[index];
        atomic_store(&sb_slot_state[index], SB_SLOT_REQUESTED);
    }
    atomic_store(&sb_batch_count, count);
    atomic_store(&sb_batch, samples);
    // Every thread is asked at once: they answer in parallel, each when the scheduler runs it.
    for (int32_t index = 0; index < count; index++) {
        results[index] = 0;
        if (syscall(SYS_tgkill, getpid(), tids[index], SIGPROF) != 0) {
            results[index] = errno;
            int expected = SB_SLOT_REQUESTED;
            atomic_compare_exchange_strong(&sb_slot_state[index], &expected, SB_SLOT_WITHDRAWN);
        }
    }
    int64_t deadline = sb_now_ns() + timeout_ns;
    struct timespec pause = {0, 20000};
    for (;;) {
        int pending = 0;
        for (int32_t index = 0; index < count; index++) {
            int state = atomic_load(&sb_slot_state[index]);
            if (state == SB_SLOT_REQUESTED || state == SB_SLOT_WRITING) pending = 1;
        }
        if (!pending) break;
        if (sb_now_ns() >= deadline) {
            // Withdraw what is still requested; a sample being written is waited for.
            for (int32_t index = 0; index < count; index++) {
                int expected = SB_SLOT_REQUESTED;
                if (atomic_compare_exchange_strong(&sb_slot_state[index], &expected, SB_SLOT_WITHDRAWN)) {
                    results[index] = ETIMEDOUT;
                }
            }
            deadline = INT64_MAX;
        }
        nanosleep(&pause, NULL);
    }
    atomic_store(&sb_batch, NULL);
    atomic_store(&sb_batch_count, 0);
    // A handler that read the batch before it was cleared may still scan its slots.
    while (atomic_load(&sb_handlers_active) > 0) nanosleep(&pause, NULL);
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

// MARK: I/O threads (epoll)

#include <sys/epoll.h>
#include <sys/eventfd.h>

int sb_io_create(int *event_fd) {
    int epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    if (epoll_fd < 0) return -1;
    int wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (wake < 0) {
        int saved = errno;
        close(epoll_fd);
        errno = saved;
        return -1;
    }
    struct epoll_event event = {.events = EPOLLIN, .data = {.u64 = 0}};
    if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, wake, &event) != 0) {
        int saved = errno;
        close(wake);
        close(epoll_fd);
        errno = saved;
        return -1;
    }
    *event_fd = wake;
    return epoll_fd;
}

/// Registers `fd` under `token` for `interest` (SB_IO_*) plus `flags` (EPOLLONESHOT or 0).
static int sb_io_register(int epoll_fd, int fd, uint64_t token, int interest, uint32_t flags, int add) {
    struct epoll_event event = {.events = flags, .data = {.u64 = token}};
    if (interest & SB_IO_READABLE) event.events |= EPOLLIN | EPOLLRDHUP;
    if (interest & SB_IO_WRITABLE) event.events |= EPOLLOUT;
    if (epoll_ctl(epoll_fd, add ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, fd, &event) != 0) return errno;
    return 0;
}

int sb_io_arm(int epoll_fd, int fd, uint64_t token, int interest, int add) {
    return sb_io_register(epoll_fd, fd, token, interest, EPOLLONESHOT, add);
}

int sb_io_watch(int epoll_fd, int fd, uint64_t token, int interest, int add) {
    return sb_io_register(epoll_fd, fd, token, interest, interest == 0 ? EPOLLONESHOT : 0, add);
}

int sb_io_remove(int epoll_fd, int fd) {
    struct epoll_event unused = {0};
    if (epoll_ctl(epoll_fd, EPOLL_CTL_DEL, fd, &unused) != 0) return errno;
    return 0;
}

int sb_io_wait(int epoll_fd, uint64_t *tokens, int32_t *flags, int capacity, int timeout_ms) {
    struct epoll_event events[64];
    if (capacity > 64) capacity = 64;
    int count = epoll_wait(epoll_fd, events, capacity, timeout_ms);
    if (count < 0) return errno == EINTR ? 0 : -1;
    for (int index = 0; index < count; index++) {
        uint32_t ready = events[index].events;
        int32_t flag = 0;
        if (ready & EPOLLIN) flag |= SB_IO_READABLE;
        if (ready & EPOLLOUT) flag |= SB_IO_WRITABLE;
        if (ready & (EPOLLERR | EPOLLHUP | EPOLLRDHUP)) flag |= SB_IO_FAILED;
        tokens[index] = events[index].data.u64;
        flags[index] = flag;
    }
    return count;
}

void sb_io_wake(int event_fd) {
    uint64_t one = 1;
    ssize_t written;
    do {
        written = write(event_fd, &one, sizeof one);
    } while (written < 0 && errno == EINTR);
}

void sb_io_drain_wakeups(int event_fd) {
    uint64_t count;
    ssize_t got;
    do {
        got = read(event_fd, &count, sizeof count);
    } while (got < 0 && errno == EINTR);
}

#include <sys/timerfd.h>

int sb_timer_create(void) {
    return timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
}

int sb_timer_arm(int fd, uint64_t deadline_ns) {
    uint64_t expirations;
    while (read(fd, &expirations, sizeof expirations) < 0 && errno == EINTR) {
    }
    struct itimerspec spec = {0};
    spec.it_value.tv_sec = (time_t)(deadline_ns / 1000000000u);
    spec.it_value.tv_nsec = (long)(deadline_ns % 1000000000u);
    return timerfd_settime(fd, TFD_TIMER_ABSTIME, &spec, NULL);
}
