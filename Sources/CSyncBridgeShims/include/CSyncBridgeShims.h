#ifndef SYNCBRIDGE_SHIMS_H
#define SYNCBRIDGE_SHIMS_H

#include <stddef.h>
#include <stdint.h>
#include <pthread.h>

#ifdef __cplusplus
extern "C" {
#endif

/// The kernel thread id of the calling thread (what `/proc/self/task/<tid>` shows).
int32_t sb_gettid(void);

/// Sets the calling thread's name (at most 15 bytes are kept: the kernel's limit).
/// Returns 0 on success or an errno value.
int sb_set_current_thread_name(const char *_Nonnull name);

/// Copies the calling thread's name into `buffer` (NUL-terminated). Returns 0 or an errno value.
int sb_get_current_thread_name(char *_Nonnull buffer, size_t size);

/// The label of the dispatch queue the calling thread is currently draining, or NULL
/// (`dispatch_queue_get_label(DISPATCH_CURRENT_QUEUE_LABEL)`). About 10 ns.
const char *_Nullable sb_current_dispatch_queue_label(void);

/// The SyncBridge worker that owns the calling thread (an unretained object pointer), or NULL
/// for threads SyncBridge did not start. A C `_Thread_local`: one load, no lookup.
void *_Nullable sb_current_worker(void);

/// Records which SyncBridge worker owns the calling thread (NULL to clear).
void sb_set_current_worker(void *_Nullable worker);

/// The SyncBridge I/O thread the calling thread is (an unretained object pointer), or NULL.
void *_Nullable sb_current_io_thread(void);

/// Records which I/O thread the calling thread is (NULL to clear).
void sb_set_current_io_thread(void *_Nullable thread);

/// The calling thread's held-lock list for the deadlock detector (a retained object pointer owned
/// by Swift code), or NULL.
void *_Nullable sb_held_locks(void);

/// Replaces the calling thread's held-lock list.
void sb_set_held_locks(void *_Nullable list);

/// What the calling thread is, when it is one where blocking must be reported like on a
/// cooperative thread — an event loop (a retained object pointer owned by Swift code) — or NULL.
void *_Nullable sb_guarded_thread(void);

/// Marks the calling thread as guarded (NULL to clear).
void sb_set_guarded_thread(void *_Nullable description);

/// The task that submitted the closure the calling SyncBridge thread runs now (0 when none is
/// known); the deadlock detector treats the thread as acting for that task.
uintptr_t sb_job_submitter(void);

/// Records the submitting task of the closure about to run on the calling thread (0 to clear).
void sb_set_job_submitter(uintptr_t task);

/// Starts a detached-from-Swift pthread that runs `body(context)`. Returns 0 or an errno value.
int sb_thread_create(pthread_t *_Nonnull thread, void *_Nullable (*_Nonnull body)(void *_Nullable),
                     void *_Nullable context, size_t stack_size);

/// The most frames a stack sample keeps.
#define SB_STACK_MAX_FRAMES 128

/// The stack of one thread, captured by ``sb_stack_capture``.
typedef struct {
    /// The sampled thread's kernel id.
    int32_t tid;
    /// How many entries of `frames` are valid.
    int32_t count;
    /// 1 when the thread was draining Swift's global concurrent queue (a cooperative thread).
    int32_t cooperative;
    /// Where the thread was interrupted (the first frame of its own code), or 0 when unknown.
    uintptr_t interrupted_pc;
    /// The Swift task the thread was running (`swift_task_getCurrent`), or 0.
    uintptr_t task;
    /// Return addresses, innermost first.
    void *_Nullable frames[SB_STACK_MAX_FRAMES];
} sb_stack_sample;

/// Installs the SIGPROF handler that samples stacks (once per process; later calls do nothing).
/// SIGPROF signals that are not sample requests go to the handler that was installed before.
/// Returns 0 or an errno value.
int sb_stack_capture_install(void);

/// The most threads one ``sb_stack_capture`` samples.
#define SB_STACK_BATCH_MAX 64

/// Samples the stacks of threads `tids[0..<count]` of this process while they keep running (or
/// stay blocked): sends each SIGPROF at once, whose handler records `backtrace()` into its
/// `samples` entry, and waits at most `timeout_ns` for them all. One capture at a time: callers
/// serialize. Writes each thread's outcome into `results`: 0, ESRCH when the thread is gone,
/// ETIMEDOUT when it did not answer (its signal mask blocks SIGPROF, or the scheduler did not
/// run it in time), or another errno value. Returns 0, or EINVAL when `count` exceeds
/// ``SB_STACK_BATCH_MAX``.
int sb_stack_capture(const int32_t *_Nonnull tids, sb_stack_sample *_Nonnull samples, int32_t *_Nonnull results,
                     int32_t count, int64_t timeout_ns);

/// Records the calling thread's return addresses, innermost first; returns how many.
int32_t sb_backtrace(void *_Nullable *_Nonnull frames, int32_t capacity);

/// Writes the kernel ids of this process's threads into `tids` (at most `capacity`); returns how
/// many there are (which may exceed `capacity`), or -1.
int32_t sb_list_threads(int32_t *_Nonnull tids, int32_t capacity);

/// Reads thread `tid`'s scheduler statistics (`/proc/self/task/<tid>/schedstat`): nanoseconds
/// spent on a CPU and nanoseconds spent runnable but waiting for one. Returns 0 or -1.
int sb_thread_schedstat(int32_t tid, uint64_t *_Nonnull running_ns, uint64_t *_Nonnull waiting_ns);

/// Thread `tid`'s scheduling state as `/proc/self/task/<tid>/stat` shows it: 'R' running or
/// runnable, 'S' sleeping, 'D' waiting for I/O…; 0 when unknown.
char sb_thread_state(int32_t tid);

/// Copies the name of thread `tid` (`/proc/self/task/<tid>/comm`) into `buffer`. Returns 0 or -1.
int sb_thread_name(int32_t tid, char *_Nonnull buffer, size_t size);

/// Describes the code at `address`: the image's path and load address and the nearest exported
/// symbol and its address (`dladdr`). Returns 0 when nothing is known.
int sb_describe_address(const void *_Nullable address, const char *_Nullable *_Nonnull image,
                        const void *_Nullable *_Nonnull image_base, const char *_Nullable *_Nonnull symbol,
                        const void *_Nullable *_Nonnull symbol_address);

/// Receives a job of Swift's global executor that the enqueue hook redirected.
typedef void (*sb_job_sink)(void *_Nonnull job);

/// Installs `swift_task_enqueueGlobal_hook` so that every job enqueued on Swift's global executor
/// goes to `sink` instead (the previous hook is kept and restored by the uninstall). Returns 0,
/// ENOSYS when the runtime has no such hook, or EBUSY when one is already installed by us.
int sb_global_enqueue_hook_install(sb_job_sink _Nonnull sink);

/// Restores the hook that was there before ``sb_global_enqueue_hook_install``. Returns 0 or
/// ENOENT when ours was not installed.
int sb_global_enqueue_hook_uninstall(void);

/// Runs a redirected job as the global executor would (`swift_job_run` with the generic
/// executor). Returns 0, or ENOSYS when the runtime has no `swift_job_run`.
int sb_run_global_job(void *_Nonnull job);

/// Marks the calling thread as one that runs redirected jobs (1) or not (0).
void sb_set_runs_global_jobs(int value);

/// Whether the calling thread runs redirected jobs of Swift's global executor.
int sb_runs_global_jobs(void);

/// Tells ThreadSanitizer, when the process runs under it, that everything this thread did before
/// happens before whatever a thread does after ``sb_tsan_acquire`` on the same address. Swift's
/// continuations hand results between threads with atomics TSan cannot see; these annotations
/// make SyncBridge's hand-offs visible to it. Nothing happens without TSan.
void sb_tsan_release(void *_Nonnull address);

/// The other side of ``sb_tsan_release``.
void sb_tsan_acquire(void *_Nonnull address);

/// Tells the CPU the caller is spinning (x86 `pause`, ARM `yield`): saves power and lets a
/// sibling hyper-thread run.
static inline void sb_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__) || defined(__arm__)
    __asm__ __volatile__("yield");
#endif
}

// MARK: I/O threads (epoll)

/// Readiness flags of ``sb_io_arm`` and ``sb_io_wait``.
#define SB_IO_READABLE 1
#define SB_IO_WRITABLE 2
/// The peer hung up or the socket failed (reported whether asked for or not).
#define SB_IO_FAILED 4

/// A new epoll instance with an eventfd registered under token 0. Returns the epoll descriptor
/// (and the eventfd in `event_fd`), or -1 with errno set.
int sb_io_create(int *_Nonnull event_fd);

/// Arms `fd` in `epoll_fd` for one readiness report (EPOLLONESHOT) of `interest`
/// (SB_IO_READABLE | SB_IO_WRITABLE), registering it under `token` first when `add` is 1.
/// Returns 0 or an errno value.
int sb_io_arm(int epoll_fd, int fd, uint64_t token, int interest, int add);

/// Registers `fd` in `epoll_fd` under `token` (adding it when `add` is 1) for `interest`
/// (SB_IO_READABLE | SB_IO_WRITABLE), level-triggered: every wait reports it while it is ready,
/// until it is registered again. With no interest it is silenced as ``sb_io_arm`` does: a hang-up
/// is reported at most once, then nothing. Returns 0 or an errno value.
int sb_io_watch(int epoll_fd, int fd, uint64_t token, int interest, int add);

/// Removes `fd` from `epoll_fd`. Returns 0 or an errno value.
int sb_io_remove(int epoll_fd, int fd);

/// Waits up to `timeout_ms` (-1: forever) for readiness; fills `tokens` and `flags` (SB_IO_*)
/// with at most `capacity` reports. Returns how many, 0 on timeout or EINTR, -1 on error.
int sb_io_wait(int epoll_fd, uint64_t *_Nonnull tokens, int32_t *_Nonnull flags, int capacity, int timeout_ms);

/// Wakes the thread waiting in ``sb_io_wait`` on the epoll instance of `event_fd`.
void sb_io_wake(int event_fd);

/// Consumes the wake-ups of `event_fd` (after token 0 was reported).
void sb_io_drain_wakeups(int event_fd);

/// A timer descriptor on the monotonic clock (timerfd), non-blocking, for an epoll set: readable
/// once its deadline has passed. Returns the descriptor, or -1 with errno set.
int sb_timer_create(void);

/// Sets the timer `fd` to fire at `deadline_ns` on the monotonic clock (0 disarms it) and consumes
/// an expiry already reported. Returns 0, or -1 with errno set.
int sb_timer_arm(int fd, uint64_t deadline_ns);

#ifdef __cplusplus
}
#endif

#endif
