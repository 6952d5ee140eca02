public import FoundationEssentials

/// Calendar arithmetic for SQL date and time texts, without `DateFormatter` (which needs full
/// Foundation): proleptic Gregorian calendar, UTC, microsecond precision — what both databases
/// store.
public enum CivilTime {
    /// Days since 1970-01-01 for a civil date (Howard Hinnant's algorithm).
    public static func days(year: Int, month: Int, day: Int) -> Int {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let mp = (month + 9) % 12
        let doy = (153 * mp + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    /// The civil date of a day count since 1970-01-01.
    public static func date(days: Int) -> (year: Int, month: Int, day: Int) {
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let day = doy - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        return (yoe + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }

    /// Microseconds since 1970-01-01T00:00:00Z, rounded to the nearest microsecond.
    public static func microseconds(of date: Date) -> Int64 {
        Int64((date.timeIntervalSince1970 * 1_000_000).rounded())
    }

    /// The date at `microseconds` since 1970-01-01T00:00:00Z.
    public static func date(microseconds: Int64) -> Date {
        Date(timeIntervalSince1970: Double(microseconds) / 1_000_000)
    }

    /// `YYYY-MM-DD HH:MM:SS.ffffff` in UTC (fraction omitted when zero).
    public static func format(_ date: Date, includeTime: Bool = true) -> String {
        let micros = microseconds(of: date)
        var days = micros / 86_400_000_000
        var rest = micros % 86_400_000_000
        if rest < 0 {
            rest += 86_400_000_000
            days -= 1
        }
        let civil = self.date(days: Int(days))
        var text = "\(pad(civil.year, 4))-\(pad(civil.month, 2))-\(pad(civil.day, 2))"
        guard includeTime else { return text }
        text += " " + formatTime(microseconds: rest)
        return text
    }

    /// `HH:MM:SS[.ffffff]` for a time of day in microseconds.
    public static func formatTime(microseconds: Int64) -> String {
        let negative = microseconds < 0
        let magnitude = microseconds.magnitude
        let seconds = magnitude / 1_000_000
        let fraction = magnitude % 1_000_000
        var text =
            "\(negative ? "-" : "")\(pad(Int(seconds / 3600), 2)):\(pad(Int(seconds / 60 % 60), 2)):\(pad(Int(seconds % 60), 2))"
        if fraction != 0 { text += "." + pad(Int(fraction), 6) }
        return text
    }

    /// Parses `YYYY-MM-DD[ HH:MM:SS[.f…]][±HH[:MM[:SS]]]` (a `T` may separate date and time);
    /// returns microseconds since the epoch, in UTC when an offset is given.
    public static func parseTimestamp(_ text: Substring) -> Int64? {
        var scanner = Scanner(text)
        guard let year = scanner.number(), scanner.skip("-"), let month = scanner.number(), scanner.skip("-"),
            let day = scanner.number(), (1...12).contains(month), (1...31).contains(day)
        else { return nil }
        var micros = Int64(days(year: year, month: month, day: day)) * 86_400_000_000
        if scanner.skip(" ") || scanner.skip("T") {
            guard let time = scanner.time() else { return nil }
            micros += time
            if let sign = scanner.peek(), sign == "+" || sign == "-" {
                scanner.advance()
                guard let hours = scanner.number() else { return nil }
                var offset = Int64(hours) * 3600
                if scanner.skip(":"), let minutes = scanner.number() { offset += Int64(minutes) * 60 }
                if scanner.skip(":"), let seconds = scanner.number() { offset += Int64(seconds) }
                micros -= (sign == "+" ? 1 : -1) * offset * 1_000_000
            }
        }
        return scanner.isAtEnd ? micros : nil
    }

    /// Parses `[-]HH:MM:SS[.f…]`; returns microseconds.
    public static func parseTime(_ text: Substring) -> Int64? {
        var scanner = Scanner(text)
        let negative = scanner.skip("-")
        guard let time = scanner.time(), scanner.isAtEnd else { return nil }
        return negative ? -time : time
    }

    private static func pad(_ value: Int, _ width: Int) -> String {
        let digits = String(value)
        return digits.count >= width ? digits : String(repeating: "0", count: width - digits.count) + digits
    }

    /// A cursor over ASCII text.
    private struct Scanner {
        let bytes: [UInt8]
        var position = 0

        init(_ text: Substring) { bytes = Array(text.utf8) }

        var isAtEnd: Bool { position == bytes.count }

        func peek() -> Character? { position < bytes.count ? Character(UnicodeScalar(bytes[position])) : nil }

        mutating func advance() { position += 1 }

        mutating func skip(_ character: Character) -> Bool {
            guard peek() == character else { return false }
            position += 1
            return true
        }

        mutating func number() -> Int? {
            var value = 0
            let start = position
            while position < bytes.count, (48...57).contains(bytes[position]), position - start < 12 {
                value = value * 10 + Int(bytes[position] - 48)
                position += 1
            }
            return position > start ? value : nil
        }

        /// `HH:MM:SS[.f…]` as microseconds; hours may exceed 23 (MariaDB's TIME).
        mutating func time() -> Int64? {
            guard let hours = number(), skip(":"), let minutes = number(), skip(":"), let seconds = number(),
                minutes < 60, seconds < 61
            else { return nil }
            var micros = (Int64(hours) * 3600 + Int64(minutes) * 60 + Int64(seconds)) * 1_000_000
            if skip(".") {
                var scale: Int64 = 100_000
                let start = position
                while position < bytes.count, (48...57).contains(bytes[position]) {
                    micros += Int64(bytes[position] - 48) * scale
                    scale /= 10
                    position += 1
                }
                guard position > start else { return nil }
            }
            return micros
        }
    }
}
