import Foundation
public import Logging

/// Logging for the sample programs: warnings and errors to standard error, so that the samples'
/// own output stays readable. Call once, first thing in `main`.
public enum SampleLogging {
    /// Bootstraps swift-log with `level` (default `.warning`); `LOG_LEVEL=debug` (or `info`…)
    /// overrides it.
    public static func bootstrap(level: Logger.Level = .warning) {
        let level = ProcessInfo.processInfo.environment["LOG_LEVEL"].flatMap(Logger.Level.init(rawValue:)) ?? level
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
    }
}
