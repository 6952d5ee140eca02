import Foundation

/// The OS floor of a hop: a round trip between two threads through a pthread mutex and
/// condition variable (wake the other thread, be woken by it).
final class PthreadPingPong: @unchecked Sendable {
    // Safe to share: `turn` and `stop` are only touched with `mutex` held.
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var turn = 0  // 1: the responder's turn, 0: the caller's
    private var stop = false
    let counter = Counter()

    init() {
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(condition, nil)
        let responder = Thread { [self] in
            pthread_mutex_lock(mutex)
            while true {
                while turn != 1 && !stop { pthread_cond_wait(condition, mutex) }
                if stop { break }
                counter.value &+= 1
                turn = 0
                pthread_cond_broadcast(condition)
            }
            pthread_mutex_unlock(mutex)
        }
        responder.start()
    }

    /// `iterations` round trips from the calling thread; returns nanoseconds per round trip.
    func run(iterations: Int) -> Double {
        let start = now()
        pthread_mutex_lock(mutex)
        for _ in 0..<iterations {
            turn = 1
            pthread_cond_broadcast(condition)
            while turn != 0 { pthread_cond_wait(condition, mutex) }
        }
        pthread_mutex_unlock(mutex)
        return Double(now() - start) / Double(iterations)
    }

    func shutdown() {
        pthread_mutex_lock(mutex)
        stop = true
        pthread_cond_broadcast(condition)
        pthread_mutex_unlock(mutex)
    }
}
