extension Duration {
    /// The duration in whole nanoseconds, saturating at `Int64`'s bounds: the one conversion every
    /// module uses for deadlines, timers and metrics.
    package var nanosecondCount: Int64 {
        let (seconds, attoseconds) = components
        let (scaled, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        guard !overflow else { return seconds < 0 ? .min : .max }
        let (sum, sumOverflow) = scaled.addingReportingOverflow(attoseconds / 1_000_000_000)
        return sumOverflow ? (seconds < 0 ? .min : .max) : sum
    }

    /// The duration in whole microseconds (rounded toward zero), saturating.
    package var microsecondCount: Int64 { nanosecondCount / 1_000 }

    /// The duration in whole milliseconds (rounded toward zero), saturating.
    package var millisecondCount: Int64 { nanosecondCount / 1_000_000 }

    /// The duration in seconds as a floating-point number.
    package var secondsValue: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}
