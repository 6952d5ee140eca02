/// A path from an async context to a blocking call.
package struct Finding: Sendable, Hashable, Codable {
    /// One call on the path.
    package struct Hop: Sendable, Hashable, Codable {
        /// What is called: a function of the package (`LegacyStore.reserve(sku:)`) or, last, the
        /// blocking call (`PQexec`).
        package var name: String
        /// Where it is called.
        package var location: SourceLocation
    }

    /// Where the async context makes the call that leads to the blocking call.
    package var location: SourceLocation
    /// The async context: an async function, an actor's method, a task's closure.
    package var context: String
    /// The calls from the context to the blocking call, which is last.
    package var chain: [Hop]
    /// What kind of wait the blocking call is.
    package var category: BlockingAPI.Category
    /// Other blocking calls the first call also leads to.
    package var alsoReaches: [String]
    /// What to do about it.
    package var fix: String
    /// Why the finding is accepted, for a finding a `check-blocking: allow` comment suppresses.
    package var suppressedBecause: String?
    /// Remarks: a suppression comment that gives no reason.
    package var notes: [String]

    /// `context → hop → … → blocking call`.
    package var path: String {
        ([context] + chain.map(\.name)).joined(separator: " → ")
    }

    /// The blocking call at the end of the chain.
    package var blockingCall: String { chain.last?.name ?? "" }
}

/// A call site with what the package's declarations say about it.
struct ResolvedCall {
    var site: CallSite
    /// The receiver's type, when known.
    var receiverType: String?
    /// The blocking call it is, if any.
    var blocking: BlockingAPI?
    /// The package's synchronous functions it may call.
    var targets: [Int]

    var callee: Callee { site.callee }
    var arguments: [Argument] { site.arguments }
}

/// Finds the paths from async contexts to blocking calls in a set of Swift files.
package final class BlockingCheck {
    private let index: SourceIndex
    private var functionsByName: [String: [CodeUnit]] = [:]

    /// A check with the standard catalogue plus a configuration's additions.
    package init(configuration: CheckConfiguration = CheckConfiguration()) {
        index = SourceIndex(catalogue: configuration.catalogue)
    }

    /// Adds a file's source; `path` is how findings name it.
    package func add(source: String, path: String) {
        index.add(source: source, path: path)
    }

    /// The findings, by location, and the findings suppressed with a reason.
    package func run() -> (findings: [Finding], suppressed: [Finding]) {
        functionsByName = Dictionary(grouping: index.units.filter { $0.kind == .function }, by: \.name)
        let resolved = index.units.map { unit in unit.calls.map { resolve($0, in: unit) } }
        let reported = findings(resolved, honouringSuppressions: true)
        let all = findings(resolved, honouringSuppressions: false)
        let reportedSites = Set(reported.map(\.location))
        let suppressed = all.filter { !reportedSites.contains($0.location) }.map { finding in
            var finding = finding
            let lines = [finding.location] + finding.chain.map(\.location)
            finding.suppressedBecause = lines.lazy.compactMap { self.suppression(at: $0)?.reason }.first
            return finding
        }
        return (reported, suppressed)
    }

    // MARK: Contexts

    /// Whether code runs in an async context: an async function or closure, or an actor's
    /// isolated method.
    private func isAsyncContext(_ unit: CodeUnit) -> Bool {
        if unit.isDetached { return false }
        if unit.isAsync { return true }
        guard unit.kind == .function, let type = unit.typeName else { return false }
        return index.actors.contains(type) && !unit.isStatic && !unit.isNonisolated
    }

    private func suppression(at location: SourceLocation) -> Suppression? {
        index.suppressions[location.file]?[location.line]
    }

    // MARK: Resolving calls

    private func resolve(_ site: CallSite, in unit: CodeUnit) -> ResolvedCall {
        var call = ResolvedCall(site: site, receiverType: nil, blocking: nil, targets: [])
        guard !site.isAwaited else { return call }
        // `name(…)` where `name` is a variable, a parameter or a property calls a closure.
        if case .free(let name) = site.callee, isVariable(name, in: unit) { return call }
        var receiverIsPackageType = false
        if case .member(let receiver, _) = site.callee, let (type, _) = self.type(of: receiver, in: unit) {
            call.receiverType = type
            receiverIsPackageType = index.types.contains(type)
        }
        let candidates = self.candidates(for: site, in: unit, receiverType: call.receiverType)
        call.targets = candidates.filter { !isAsyncContext($0) && !$0.isAsync }.map(\.id)
        // A package function of the same name is what a free call calls; a package type's method
        // is not Foundation's.
        let shadowed: Bool =
            switch site.callee {
            case .free(let name): !candidates.isEmpty || index.types.contains(name)
            case .member: receiverIsPackageType
            case .initializer: false
            }
        // What the package's configuration declares blocking is, even when the package defines it.
        call.blocking = index.catalogue.match(call, declaredOnly: shadowed)
        return call
    }

    /// The type of a receiver, and whether it is the type itself (a static call).
    private func type(of receiver: Receiver, in unit: CodeUnit) -> (String, isType: Bool)? {
        switch receiver {
        case .implicitSelf, .selfValue:
            return unit.typeName.map { ($0, unit.isStatic) }
        case .identifier(let name):
            if name.first?.isUppercase == true { return (name, true) }
            return variableType(name, in: unit).map { ($0, false) }
        case .property(let base, let name):
            guard let (type, _) = self.type(of: base, in: unit), let property = index.properties[type]?[name]
            else { return nil }
            return (property, false)
        case .instance(let type):
            return (type, false)
        case .unknown:
            return nil
        }
    }

    private func isVariable(_ name: String, in unit: CodeUnit) -> Bool {
        var scope: CodeUnit? = unit
        while let current = scope {
            if current.localNames.contains(name) { return true }
            if let type = current.typeName, index.propertyNames[type]?.contains(name) == true { return true }
            scope = current.parent.map { index.units[$0] }
        }
        return false
    }

    private func variableType(_ name: String, in unit: CodeUnit) -> String? {
        var scope: CodeUnit? = unit
        while let current = scope {
            if let type = current.variables[name] { return type }
            if let type = current.typeName.flatMap({ index.properties[$0]?[name] }) { return type }
            scope = current.parent.map { index.units[$0] }
        }
        return nil
    }

    private func candidates(for site: CallSite, in unit: CodeUnit, receiverType: String?) -> [CodeUnit] {
        let named = (functionsByName[site.callee.baseName] ?? []).filter {
            Self.accepts($0.parameters, site.arguments)
        }
        switch site.callee {
        case .free(let name) where index.types.contains(name):
            return (functionsByName["init"] ?? []).filter {
                $0.typeName == name && Self.accepts($0.parameters, site.arguments)
            }
        case .free:
            let own = named.filter { $0.typeName != nil && $0.typeName == unit.typeName }
            return own.isEmpty ? named.filter { $0.typeName == nil } : own
        case .initializer(let type):
            // `self.init(…)` delegates to another initializer of the same type.
            let type = type == "self" || type == "Self" ? unit.typeName : type
            return named.filter { $0.typeName == type }
        case .member:
            guard let receiverType else {
                // An unknown receiver: any instance method of that name and labels.
                return named.filter { $0.typeName != nil && !$0.isStatic }
            }
            guard index.types.contains(receiverType) else { return [] }
            if index.protocols.contains(receiverType) {
                return named.filter { $0.typeName != nil && !$0.isStatic }
            }
            return named.filter { $0.typeName == receiverType }
        }
    }

    /// Whether a call's arguments fit a declaration's parameters: labels in order, defaulted and
    /// variadic parameters optional, a trailing closure standing for any parameter.
    static func accepts(_ parameters: [Parameter], _ arguments: [Argument]) -> Bool {
        accepts(parameters[...], arguments[...])
    }

    private static func accepts(_ parameters: ArraySlice<Parameter>, _ arguments: ArraySlice<Argument>) -> Bool {
        guard let argument = arguments.first else {
            return parameters.allSatisfy { $0.hasDefault || $0.isVariadic }
        }
        guard let parameter = parameters.first else { return false }
        let fits = argument.isTrailingClosure && argument.label == nil ? true : parameter.label == argument.label
        if fits {
            // A variadic parameter also takes the unlabelled arguments that follow.
            if parameter.isVariadic {
                let rest = Parameter(label: nil, hasDefault: true, isVariadic: true)
                if accepts([rest] + parameters.dropFirst(), arguments.dropFirst()) { return true }
            }
            if accepts(parameters.dropFirst(), arguments.dropFirst()) { return true }
        }
        // Skip a parameter the call leaves out.
        return (parameter.hasDefault || parameter.isVariadic) && accepts(parameters.dropFirst(), arguments)
    }

    // MARK: Paths

    /// For each synchronous function that leads to a blocking call: how many calls away, and the
    /// first call of the shortest path.
    private struct Reach {
        var distance: Int
        /// The call site in the function (an index into its calls) that starts the shortest path.
        var call: Int
        /// The target of that call, or `nil` when the call itself blocks.
        var target: Int?
        /// Every blocking call it leads to.
        var reaches: Set<String>
    }

    private func findings(_ resolved: [[ResolvedCall]], honouringSuppressions: Bool) -> [Finding] {
        func counts(_ call: ResolvedCall) -> Bool {
            !honouringSuppressions || suppression(at: call.site.location)?.reason == nil
        }
        // Direct blocking calls, then paths through the package's functions, to a fixed point.
        var reach: [Int: Reach] = [:]
        let functions = index.units.filter { $0.kind == .function && !isAsyncContext($0) && !$0.isDetached }
        for unit in functions {
            for (position, call) in resolved[unit.id].enumerated() where counts(call) {
                guard let api = call.blocking else { continue }
                let name = Self.name(of: api, call)
                if var known = reach[unit.id] {
                    known.reaches.insert(name)
                    reach[unit.id] = known
                } else {
                    reach[unit.id] = Reach(distance: 0, call: position, target: nil, reaches: [name])
                }
            }
        }
        var changed = true
        while changed {
            changed = false
            for unit in functions {
                for (position, call) in resolved[unit.id].enumerated() where counts(call) {
                    for target in call.targets where target != unit.id {
                        guard let next = reach[target] else { continue }
                        if var known = reach[unit.id] {
                            let before = known
                            if next.distance + 1 < known.distance {
                                known.distance = next.distance + 1
                                known.call = position
                                known.target = target
                            }
                            known.reaches.formUnion(next.reaches)
                            if known.distance != before.distance || known.reaches != before.reaches {
                                reach[unit.id] = known
                                changed = true
                            }
                        } else {
                            reach[unit.id] = Reach(
                                distance: next.distance + 1,
                                call: position,
                                target: target,
                                reaches: next.reaches
                            )
                            changed = true
                        }
                    }
                }
            }
        }

        var found: [Finding] = []
        for unit in index.units where isAsyncContext(unit) {
            for call in resolved[unit.id] where counts(call) {
                var chain: [Finding.Hop] = []
                var reaches: Set<String> = []
                var category: BlockingAPI.Category
                if let api = call.blocking {
                    chain = [Finding.Hop(name: Self.name(of: api, call), location: call.site.location)]
                    category = api.category
                } else {
                    let reachable = call.targets.compactMap { target in reach[target].map { (target, $0) } }
                    guard let (first, _) = reachable.min(by: { $0.1.distance < $1.1.distance }) else { continue }
                    for (_, known) in reachable { reaches.formUnion(known.reaches) }
                    chain = [Finding.Hop(name: index.units[first].displayName, location: call.site.location)]
                    var function = first
                    var end: ResolvedCall?
                    while let step = reach[function] {
                        let next = resolved[function][step.call]
                        guard let target = step.target else {
                            end = next
                            chain.append(
                                Finding.Hop(name: Self.name(of: next.blocking!, next), location: next.site.location)
                            )
                            break
                        }
                        chain.append(Finding.Hop(name: index.units[target].displayName, location: next.site.location))
                        function = target
                    }
                    category = end?.blocking?.category ?? .declared
                }
                let helper = chain.count > 1 ? chain[0].name : nil
                let lines = chain.map(\.location)
                let notes = lines.compactMap { location -> String? in
                    guard let suppression = suppression(at: location), suppression.reason == nil else { return nil }
                    return
                        "the `\(Suppression.marker)` comment at \(location.file):\(suppression.line) gives no reason, so it suppresses nothing"
                }
                reaches.remove(chain.last?.name ?? "")
                found.append(
                    Finding(
                        location: call.site.location,
                        context: unit.displayName,
                        chain: chain,
                        category: category,
                        alsoReaches: reaches.sorted(),
                        fix: category.fix(through: helper),
                        suppressedBecause: nil,
                        notes: notes
                    )
                )
            }
        }
        return found.sorted { $0.location < $1.location }
    }

    /// How a finding names a blocking call: `PQexec`, `Blocking.call("legacyFetch")`.
    private static func name(of api: BlockingAPI, _ call: ResolvedCall) -> String {
        if api.category == .declared, let operation = call.site.firstStringLiteral {
            return "\(api.name)(\"\(operation)\")"
        }
        return api.name
    }
}
