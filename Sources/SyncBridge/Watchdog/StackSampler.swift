import CSyncBridgeShims

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// One frame of a captured stack: the return address, where it lies (image and offset, kept for
/// offline symbolization with `llvm-symbolizer`/`addr2line`), and the nearest symbol the process
/// itself can name (exported symbols only), demangled.
public struct StackFrame: Sendable, Hashable, Codable, CustomStringConvertible {
    /// The return address.
    public let address: UInt
    /// The path of the executable or library that holds the address.
    public let image: String?
    /// The address's offset inside `image` (what offline symbolizers take).
    public let imageOffset: UInt?
    /// The nearest exported symbol at or before the address, demangled; `nil` when the process
    /// cannot name it (a non-exported function).
    public let symbol: String?
    /// How far past the start of `symbol` the address lies.
    public let symbolOffset: UInt?

    /// `usleep + 0x24 (libc.so.6 +0xe5a14)`.
    public var description: String {
        let place =
            image.map {
                " (\($0.split(separator: "/").last.map(String.init) ?? $0) +0x\(String(imageOffset ?? 0, radix: 16)))"
            } ?? ""
        guard let symbol else { return "0x\(String(address, radix: 16))" + place }
        return "\(symbol) + 0x\(String(symbolOffset ?? 0, radix: 16))" + place
    }
}

/// The stack of one thread at one moment.
public struct ThreadStack: Sendable, Hashable, Codable, CustomStringConvertible {
    /// The thread's kernel id (as `/proc/<pid>/task/<tid>` and `top -H` show it).
    public let threadID: Int32
    /// The thread's name (empty for libdispatch's unnamed workers).
    public let name: String
    /// Whether the thread was draining Swift's global concurrent queue when it was sampled.
    public let isCooperative: Bool
    /// Whether the thread was on a CPU (or runnable) rather than waiting in the kernel (sleep,
    /// I/O, a lock) just before it was sampled.
    public let wasRunning: Bool
    /// The frames, innermost first.
    public let frames: [StackFrame]
    /// The address of the Swift task the thread was running, or 0: two samples with the same
    /// task show a thread that stayed in that task.
    let task: UInt

    /// Whether any frame's symbol contains `text` (`"usleep"`, `"nanosleep"`).
    public func contains(symbol text: String) -> Bool {
        frames.contains { $0.symbol?.contains(text) == true }
    }

    private enum CodingKeys: String, CodingKey {
        case threadID, name, isCooperative, wasRunning, frames
    }

    /// Creates a stack (decoding); the task is not kept.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        threadID = try container.decode(Int32.self, forKey: .threadID)
        name = try container.decode(String.self, forKey: .name)
        isCooperative = try container.decode(Bool.self, forKey: .isCooperative)
        wasRunning = try container.decode(Bool.self, forKey: .wasRunning)
        frames = try container.decode([StackFrame].self, forKey: .frames)
        task = 0
    }

    init(threadID: Int32, name: String, isCooperative: Bool, wasRunning: Bool, frames: [StackFrame], task: UInt) {
        self.threadID = threadID
        self.name = name
        self.isCooperative = isCooperative
        self.wasRunning = wasRunning
        self.frames = frames
        self.task = task
    }

    /// Equal when everything but the task is: the task's address is only meaningful within one
    /// process run.
    public static func == (lhs: ThreadStack, rhs: ThreadStack) -> Bool {
        lhs.threadID == rhs.threadID && lhs.name == rhs.name && lhs.isCooperative == rhs.isCooperative
            && lhs.wasRunning == rhs.wasRunning && lhs.frames == rhs.frames
    }

    /// Hashes what `==` compares.
    public func hash(into hasher: inout Hasher) {
        hasher.combine(threadID)
        hasher.combine(name)
        hasher.combine(isCooperative)
        hasher.combine(wasRunning)
        hasher.combine(frames)
    }

    /// A header line, then one numbered line per frame.
    public var description: String {
        let header =
            "thread \(threadID)\(name.isEmpty ? "" : " '\(name)'")\(isCooperative ? " (cooperative)" : ""), \(wasRunning ? "running" : "waiting in the kernel"):"
        return ([header] + frames.enumerated().map { "  #\($0.offset) \($0.element)" }).joined(separator: "\n")
    }
}

/// Samples the stacks of other threads of this process while they keep running or stay blocked
/// (SIGPROF and `backtrace` into preallocated memory, in the C shim), and symbolizes them.
enum StackSampler {
    /// Serializes captures: the shim takes one at a time.
    private static let captureLock = Locked(false)

    /// Installs the signal handler; `false` when the process refused it.
    static func install() -> Bool {
        sb_stack_capture_install() == 0
    }

    /// The kernel ids of this process's threads.
    static func threadIDs() -> [Int32] {
        var capacity: Int32 = 256
        while true {
            var ids = [Int32](repeating: 0, count: Int(capacity))
            let count = sb_list_threads(&ids, capacity)
            if count < 0 { return [] }
            if count <= capacity { return Array(ids.prefix(Int(count))) }
            capacity = count + 64
        }
    }

    /// The stack of thread `threadID`, or `nil` when it is gone or did not answer within
    /// `timeout` (a thread that blocks SIGPROF, or one the scheduler did not run in time).
    static func sample(_ threadID: Int32, timeout: Duration = .milliseconds(100)) -> ThreadStack? {
        sample([threadID], timeout: timeout).first ?? nil
    }

    /// The stacks of threads `threadIDs`, sampled together: each thread is asked at once and
    /// answers when the scheduler runs it, so that on a loaded machine the wait is the slowest
    /// thread's, not the sum of all. `nil` for a thread that is gone or did not answer within
    /// `timeout`, and, with `onlyCooperative`, for one that was not running Swift's global
    /// concurrent queue (its stack is not symbolized).
    static func sample(
        _ threadIDs: [Int32],
        timeout: Duration = .milliseconds(100),
        onlyCooperative: Bool = false
    ) -> [ThreadStack?] {
        guard install(), !threadIDs.isEmpty else { return threadIDs.map { _ in nil } }
        var stacks: [ThreadStack?] = []
        for start in stride(from: 0, to: threadIDs.count, by: Int(SB_STACK_BATCH_MAX)) {
            let batch = Array(threadIDs[start..<min(threadIDs.count, start + Int(SB_STACK_BATCH_MAX))])
            stacks += sampleBatch(batch, timeout: timeout, onlyCooperative: onlyCooperative)
        }
        return stacks
    }

    private static func sampleBatch(_ threadIDs: [Int32], timeout: Duration, onlyCooperative: Bool) -> [ThreadStack?] {
        let samples = UnsafeMutablePointer<sb_stack_sample>.allocate(capacity: threadIDs.count)
        defer { samples.deallocate() }
        var results = [Int32](repeating: 0, count: threadIDs.count)
        // Read before the signals, which wake sleeping threads.
        let running = threadIDs.map { sb_thread_state($0) == CChar(UInt8(ascii: "R")) }
        let status = captureLock.withLock { _ in
            sb_stack_capture(threadIDs, samples, &results, Int32(threadIDs.count), timeout.nanosecondCount)
        }
        guard status == 0 else { return threadIDs.map { _ in nil } }
        return threadIDs.indices.map { index in
            let sample = samples + index
            guard results[index] == 0, !onlyCooperative || sample.pointee.cooperative != 0 else { return nil }
            let count = Int(sample.pointee.count)
            let addresses = withUnsafeBytes(of: &sample.pointee.frames) { raw in
                Array(raw.bindMemory(to: UInt.self).prefix(count))
            }
            // The first frames are the signal handler's own and the kernel's return trampoline;
            // the thread's own stack starts at the instruction the signal interrupted.
            var frames = symbolize(addresses)
            let interrupted = UInt(sample.pointee.interrupted_pc)
            if let start = frames.prefix(8).firstIndex(where: {
                $0.address == interrupted || $0.address == interrupted + 1
            }) {
                frames.removeFirst(start)
            } else if !frames.isEmpty {
                frames.removeFirst(min(2, frames.count))
            }
            return ThreadStack(
                threadID: threadIDs[index],
                name: threadName(threadIDs[index]),
                isCooperative: sample.pointee.cooperative != 0,
                wasRunning: running[index],
                frames: frames,
                task: UInt(sample.pointee.task)
            )
        }
    }

    /// The calling thread's own stack, without this function's frame.
    static func currentStack() -> ThreadStack {
        var addresses = [UnsafeMutableRawPointer?](repeating: nil, count: Int(SB_STACK_MAX_FRAMES))
        let count = Int(sb_backtrace(&addresses, Int32(addresses.count)))
        let frames = symbolize(addresses.prefix(count).map { UInt(bitPattern: $0) })
        return ThreadStack(
            threadID: sb_gettid(),
            name: threadName(sb_gettid()),
            isCooperative: CooperativePool.isCurrentThread,
            wasRunning: true,
            frames: Array(frames.dropFirst()),
            task: 0
        )
    }

    /// The thread's name from `/proc`.
    static func threadName(_ threadID: Int32) -> String {
        var buffer = [CChar](repeating: 0, count: 64)
        guard sb_thread_name(threadID, &buffer, buffer.count) == 0 else { return "" }
        return buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }

    /// Names each address as far as the process can: image and offset always, the exported
    /// symbol when there is one, demangled with the runtime's `swift_demangle`.
    static func symbolize(_ addresses: [UInt]) -> [StackFrame] {
        addresses.map { address in
            var image: UnsafePointer<CChar>?
            var imageBase: UnsafeRawPointer?
            var symbol: UnsafePointer<CChar>?
            var symbolAddress: UnsafeRawPointer?
            // A return address points after the call; look up the call itself.
            let lookup = UnsafeRawPointer(bitPattern: address &- 1)
            guard sb_describe_address(lookup, &image, &imageBase, &symbol, &symbolAddress) != 0 else {
                return StackFrame(address: address, image: nil, imageOffset: nil, symbol: nil, symbolOffset: nil)
            }
            let base = UInt(bitPattern: imageBase)
            let start = UInt(bitPattern: symbolAddress)
            return StackFrame(
                address: address,
                image: image.map { String(cString: $0) },
                imageOffset: base == 0 ? nil : address &- base,
                symbol: symbol.map { demangle(String(cString: $0)) },
                symbolOffset: start == 0 ? nil : address &- start
            )
        }
    }

    private typealias DemangleFunction =
        @convention(c) (
            UnsafePointer<CChar>?, Int, UnsafeMutablePointer<CChar>?, UnsafeMutablePointer<Int>?, UInt32
        ) -> UnsafeMutablePointer<CChar>?

    /// The runtime's demangler, found once.
    private static let demangler: DemangleFunction? = {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "swift_demangle") else { return nil }
        return unsafeBitCast(symbol, to: DemangleFunction.self)
    }()

    /// `name` demangled when it is a Swift symbol; unchanged otherwise.
    static func demangle(_ name: String) -> String {
        guard name.hasPrefix("$s") || name.hasPrefix("_$s"), let demangler else { return name }
        let result = name.withCString { demangler($0, strlen($0), nil, nil, 0) }
        guard let result else { return name }
        defer { free(result) }
        return String(cString: result)
    }
}
