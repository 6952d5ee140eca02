extension Duration {
    /// The duration in seconds, with fractions: for rates and printed figures.
    public var inSeconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) / 1e18
    }

    /// The duration in milliseconds, with fractions.
    public var inMilliseconds: Double { inSeconds * 1000 }
}
