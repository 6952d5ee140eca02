import FoundationEssentials

/// What one run of the check found, for people and for tools.
package struct CheckReport: Sendable {
    /// Findings no baseline entry accepts.
    package var findings: [Finding]
    /// Findings the baseline accepts.
    package var expected: [Finding]
    /// Findings a `check-blocking: allow` comment with a reason suppresses.
    package var suppressed: [Finding]
    /// Baseline entries that match no finding.
    package var stale: [Baseline.Entry]
    /// How many files were read.
    package var fileCount: Int
    /// How long reading and checking took.
    package var duration: Duration

    /// In strict mode, whether the run fails: a new finding, or a baseline out of date.
    package var failsStrictMode: Bool { !findings.isEmpty || !stale.isEmpty }

    /// Compiler-style lines (`file:line:column: warning: …`), then a summary line.
    package func text(verbose: Bool = false) -> String {
        var lines: [String] = []
        func describe(_ finding: Finding, as severity: String) {
            lines.append("\(finding.location): \(severity): blocking call from an async context: \(finding.path)")
            for hop in finding.chain.dropFirst() {
                lines.append("    \(hop.location): \(hop.name)")
            }
            if !finding.alsoReaches.isEmpty {
                lines.append("    also reaches: \(finding.alsoReaches.joined(separator: ", "))")
            }
            lines.append("    fix: \(finding.fix)")
            for note in finding.notes { lines.append("    note: \(note)") }
        }
        for finding in findings { describe(finding, as: "warning") }
        if verbose {
            for finding in expected { describe(finding, as: "note: expected by the baseline") }
            for finding in suppressed {
                lines.append(
                    "\(finding.location): note: suppressed (\(finding.suppressedBecause ?? "")): \(finding.path)"
                )
            }
        }
        for entry in stale {
            lines.append(
                "\(entry.file): warning: the baseline expects a finding the check no longer makes: \(entry.path)"
            )
        }
        let milliseconds = duration.components.seconds * 1000 + duration.components.attoseconds / 1_000_000_000_000_000
        var summary = "check-blocking: \(findings.count) finding\(findings.count == 1 ? "" : "s")"
        var extras: [String] = []
        if !expected.isEmpty { extras.append("\(expected.count) expected by the baseline") }
        if !suppressed.isEmpty { extras.append("\(suppressed.count) suppressed") }
        if !stale.isEmpty { extras.append("\(stale.count) baseline entries out of date") }
        if !extras.isEmpty { summary += " (\(extras.joined(separator: ", ")))" }
        summary += " in \(fileCount) files, \(milliseconds) ms"
        lines.append(summary)
        return lines.joined(separator: "\n")
    }

    /// The report as JSON; its `findings` can serve as a baseline.
    package func json() throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        let document = Document(
            findings: findings.map(Document.Item.init),
            expected: expected.map(Document.Item.init),
            suppressed: suppressed.map(Document.Item.init),
            staleBaseline: stale.map { Document.Stale(file: $0.file, path: $0.path) },
            files: fileCount,
            milliseconds: Int(
                duration.components.seconds * 1000 + duration.components.attoseconds / 1_000_000_000_000_000
            )
        )
        return String(decoding: try encoder.encode(document), as: UTF8.self)
    }

    private struct Document: Encodable {
        struct Item: Encodable {
            var file: String
            var line: Int
            var column: Int
            var context: String
            var path: String
            var chain: [Finding.Hop]
            var blockingCall: String
            var category: BlockingAPI.Category
            var alsoReaches: [String]
            var fix: String
            var reason: String?
            var notes: [String]

            init(_ finding: Finding) {
                file = finding.location.file
                line = finding.location.line
                column = finding.location.column
                context = finding.context
                path = finding.path
                chain = finding.chain
                blockingCall = finding.blockingCall
                category = finding.category
                alsoReaches = finding.alsoReaches
                fix = finding.fix
                reason = finding.suppressedBecause
                notes = finding.notes
            }
        }

        struct Stale: Encodable {
            var file: String
            var path: String
        }

        var findings: [Item]
        var expected: [Item]
        var suppressed: [Item]
        var staleBaseline: [Stale]
        var files: Int
        var milliseconds: Int
    }
}
