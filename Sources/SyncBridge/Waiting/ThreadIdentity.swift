import CSyncBridgeShims

/// The name and kernel id of a thread, as reports show it: `sb-pg-1 (tid 4242)`.
public struct ThreadIdentity: Hashable, Sendable, CustomStringConvertible {
    /// The thread's name (`pthread_getname_np`), empty when it has none.
    public let name: String
    /// The kernel thread id (`gettid`).
    public let tid: Int32

    /// The calling thread.
    public static var current: ThreadIdentity {
        var buffer = [CChar](repeating: 0, count: 32)
        let result = buffer.withUnsafeMutableBufferPointer {
            sb_get_current_thread_name($0.baseAddress!, $0.count)
        }
        let name =
            result == 0
            ? String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) : ""
        return ThreadIdentity(name: name, tid: sb_gettid())
    }

    /// `name (tid N)`, or `tid N` for an unnamed thread.
    public var description: String {
        name.isEmpty ? "tid \(tid)" : "\(name) (tid \(tid))"
    }
}
