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

/// Starts a detached-from-Swift pthread that runs `body(context)`. Returns 0 or an errno value.
int sb_thread_create(pthread_t *_Nonnull thread, void *_Nullable (*_Nonnull body)(void *_Nullable),
                     void *_Nullable context, size_t stack_size);

/// Tells the CPU the caller is spinning (x86 `pause`, ARM `yield`): saves power and lets a
/// sibling hyper-thread run.
static inline void sb_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__) || defined(__arm__)
    __asm__ __volatile__("yield");
#endif
}

#ifdef __cplusplus
}
#endif

#endif
