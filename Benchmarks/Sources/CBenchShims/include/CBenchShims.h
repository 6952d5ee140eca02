#ifndef SYNCBRIDGE_BENCH_SHIMS_H
#define SYNCBRIDGE_BENCH_SHIMS_H
/// Sets the calling thread's timer slack in nanoseconds (prctl is variadic, so Swift cannot call it).
int bench_set_timer_slack(unsigned long nanoseconds);
/// Pins the calling thread to CPU `cpu` (sched_setaffinity needs _GNU_SOURCE). Returns 0 or -1.
int bench_pin_current_thread(int cpu);
#endif
