#ifndef SYNCBRIDGE_BENCH_SHIMS_H
#define SYNCBRIDGE_BENCH_SHIMS_H
/// Sets the calling thread's timer slack in nanoseconds (prctl is variadic, so Swift cannot call it).
int bench_set_timer_slack(unsigned long nanoseconds);
#endif
