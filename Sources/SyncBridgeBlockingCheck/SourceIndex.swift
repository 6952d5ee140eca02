import SwiftParser
import SwiftSyntax

/// A place in a source file.
package struct SourceLocation: Sendable, Hashable, Comparable, Codable, CustomStringConvertible {
    /// The file's path, relative to the checked package's root when it is inside it.
    package var file: String
    /// 1-based.
    package var line: Int
    /// 1-based.
    package var column: Int

    package static func < (a: Self, b: Self) -> Bool {
        (a.file, a.line, a.column) < (b.file, b.line, b.column)
    }

    /// `file:line:column`.
    package var description: String { "\(file):\(line):\(column)" }
}

/// An argument of a call, as far as overload resolution by labels needs it.
struct Argument: Hashable {
    /// The label; `nil` for an unlabelled argument or the first trailing closure.
    var label: String?
    /// A trailing closure, which may stand for a labelled parameter.
    var isTrailingClosure = false
}

/// What a call's receiver is, before the types of the whole package are known.
indirect enum Receiver: Hashable {
    /// `foo()` inside a type: `self`, or a free function.
    case implicitSelf
    /// `self.foo()`.
    case selfValue
    /// `name.foo()`: a variable, or a type when capitalised.
    case identifier(String)
    /// `base.name.foo()`.
    case property(Receiver, String)
    /// `Type(…).foo()` or `Type.member.foo()`: an instance of `Type`.
    case instance(of: String)
    /// Anything else.
    case unknown
}

/// What a call calls.
enum Callee: Hashable {
    /// `name(…)`: a function, or an initializer when `name` is a type.
    case free(String)
    /// `receiver.name(…)`.
    case member(Receiver, String)
    /// `Type.init(…)`.
    case initializer(String)

    var baseName: String {
        switch self {
        case .free(let name), .member(_, let name): name
        case .initializer: "init"
        }
    }
}

/// One call in a function's body.
struct CallSite {
    var callee: Callee
    var arguments: [Argument]
    /// The called name's position.
    var location: SourceLocation
    /// `await`ed: an async call, which neither blocks nor leads to a synchronous function.
    var isAwaited: Bool
    /// The first argument when it is a string literal (`Blocking.call("legacyFetch")`).
    var firstStringLiteral: String?
}

/// A declared parameter, as overload resolution by labels needs it.
struct Parameter: Hashable {
    var label: String?
    var hasDefault: Bool
    var isVariadic: Bool
}

/// A body of code: a function, an initializer, an accessor, a closure that runs somewhere of its
/// own (a task, a pool's thread), or a file's top-level code.
final class CodeUnit {
    enum Kind: Equatable {
        case function
        /// A closure that is a context of its own; its description (`Task {}`).
        case closure(String)
        case topLevel
    }

    let id: Int
    let kind: Kind
    /// The function's base name (`reserve`), `init`, or the closure's description.
    let name: String
    /// The innermost type it is declared in.
    let typeName: String?
    /// The unit it is nested in, for variables it captures.
    let parent: Int?
    let location: SourceLocation
    var parameters: [Parameter] = []
    /// Declared `async`, or an async closure, or top-level code that awaits.
    var isAsync = false
    var isStatic = false
    var isNonisolated = false
    /// Its calls belong to no context: the closure of a pool's `run`, an accepted-blocking scope.
    var isDetached = false
    var calls: [CallSite] = []
    /// Variables and parameters whose type is written down: name → type.
    var variables: [String: String] = [:]
    /// Every variable and parameter name, typed or not: a call `name(…)` of one calls a closure,
    /// not a function of that name.
    var localNames: Set<String> = []
    /// The enclosing function's display name, for closures.
    var ownerName: String?

    init(id: Int, kind: Kind, name: String, typeName: String?, parent: Int?, location: SourceLocation) {
        self.id = id
        self.kind = kind
        self.name = name
        self.typeName = typeName
        self.parent = parent
        self.location = location
    }

    /// `Type.name(label:)`, `Task {} in Type.name(label:)`.
    var displayName: String {
        switch kind {
        case .function:
            let labels = parameters.map { "\($0.label ?? "_"):" }.joined()
            let signature = "\(name)(\(labels))"
            return typeName.map { "\($0).\(signature)" } ?? signature
        case .closure(let description):
            return ownerName.map { "\(description) in \($0)" } ?? description
        case .topLevel:
            return "top-level code"
        }
    }
}

/// Every unit of code of the checked files, with the package's types.
final class SourceIndex {
    private(set) var units: [CodeUnit] = []
    /// Types declared as actors.
    private(set) var actors: Set<String> = []
    /// Protocols declared in the package.
    private(set) var protocols: Set<String> = []
    /// Every type declared in the package.
    private(set) var types: Set<String> = []
    /// Stored and computed properties whose type is written down: type → name → type.
    private(set) var properties: [String: [String: String]] = [:]
    /// Every property name by type, typed or not.
    private(set) var propertyNames: [String: Set<String>] = [:]
    /// Suppression comments by file and line.
    private(set) var suppressions: [String: [Int: Suppression]] = [:]
    let catalogue: BlockingCatalogue

    init(catalogue: BlockingCatalogue) {
        self.catalogue = catalogue
    }

    /// Parses `source` and adds its code.
    func add(source: String, path: String) {
        let tree = Parser.parse(source: source)
        let converter = SourceLocationConverter(fileName: path, tree: tree)
        var walker = Walker(index: self, path: path, converter: converter)
        walker.walkFile(tree)
        suppressions[path] = Suppression.scan(source)
    }

    fileprivate func newUnit(
        kind: CodeUnit.Kind,
        name: String,
        typeName: String?,
        parent: Int?,
        location: SourceLocation
    ) -> CodeUnit {
        let unit = CodeUnit(
            id: units.count,
            kind: kind,
            name: name,
            typeName: typeName,
            parent: parent,
            location: location
        )
        units.append(unit)
        return unit
    }

    fileprivate func declareType(_ name: String, isActor: Bool = false, isProtocol: Bool = false) {
        types.insert(name)
        if isActor { actors.insert(name) }
        if isProtocol { protocols.insert(name) }
    }

    fileprivate func declareProperty(_ name: String, type: String, in typeName: String) {
        properties[typeName, default: [:]][name] = type
    }

    fileprivate func declarePropertyName(_ name: String, in typeName: String) {
        propertyNames[typeName, default: []].insert(name)
    }
}

/// A `// check-blocking: allow <reason>` comment.
package struct Suppression: Sendable, Hashable {
    /// Why the blocking is accepted; `nil` when the comment gives no reason (then it suppresses
    /// nothing).
    package var reason: String?
    /// The comment's line (the line above the code it applies to, or the same).
    package var line: Int

    static let marker = "check-blocking: allow"

    /// The suppressions of a file, by 1-based line: a comment at the end of a line applies to
    /// that line; a comment on a line of its own, to the next line of code.
    static func scan(_ source: String) -> [Int: Suppression] {
        var found: [Int: Suppression] = [:]
        var pending: Suppression?
        var line = 0
        for text in source.split(separator: "\n", omittingEmptySubsequences: false) {
            line += 1
            let code = text.firstRange(of: "//").map { text[..<$0.lowerBound] } ?? text[...]
            let isComment = code.allSatisfy(\.isWhitespace)
            if let comment = text.firstRange(of: "//"),
                let marker = text[comment.upperBound...].firstRange(of: marker)
            {
                var reason = text[marker.upperBound...].drop { $0 == " " || $0 == ":" || $0 == "-" || $0 == "—" }
                while reason.last == " " { reason = reason.dropLast() }
                let suppression = Suppression(reason: reason.isEmpty ? nil : String(reason), line: line)
                if isComment {
                    pending = suppression
                    continue
                }
                found[line] = suppression
            } else if let suppression = pending, !isComment {
                found[line] = suppression
                pending = nil
            }
        }
        return found
    }
}

/// Walks one file's syntax tree, keeping the enclosing type and unit.
private struct Walker {
    let index: SourceIndex
    let path: String
    let converter: SwiftSyntax.SourceLocationConverter
    var typeStack: [String] = []
    /// The unit whose calls the code being walked makes; `nil` at type level.
    var current: CodeUnit?
    var topLevel: CodeUnit?

    /// Calls that hand a closure to a task: the closure is an async context.
    static let taskStarters: Set<String> = [
        "Task", "detached", "immediate", "addTask", "addTaskUnlessCancelled", "addImmediateTask",
        "addImmediateTaskUnlessCancelled", "addDiscardingTask",
    ]

    init(index: SourceIndex, path: String, converter: SwiftSyntax.SourceLocationConverter) {
        self.index = index
        self.path = path
        self.converter = converter
    }

    func location(_ node: some SyntaxProtocol) -> SourceLocation {
        let position = node.startLocation(converter: converter)
        return SourceLocation(file: path, line: position.line, column: position.column)
    }

    mutating func walkFile(_ file: SourceFileSyntax) {
        for item in file.statements {
            // Declarations of functions and types; variables at top level are top-level code.
            if item.item.is(DeclSyntax.self) && !item.item.is(VariableDeclSyntax.self) {
                current = nil
                walk(Syntax(item.item))
            } else {
                if topLevel == nil {
                    topLevel = index.newUnit(
                        kind: .topLevel,
                        name: "top-level code",
                        typeName: nil,
                        parent: nil,
                        location: location(item)
                    )
                }
                current = topLevel
                walk(Syntax(item.item))
                if let topLevel, Self.awaits(Syntax(item.item)) { topLevel.isAsync = true }
            }
        }
    }

    mutating func walkChildren(_ node: Syntax) {
        for child in node.children(viewMode: .sourceAccurate) { walk(child) }
    }

    mutating func walk(_ node: Syntax) {
        if let decl = node.as(FunctionDeclSyntax.self) {
            enterFunction(
                Syntax(decl),
                name: decl.name.text,
                signature: decl.signature.parameterClause,
                isAsync: decl.signature.effectSpecifiers?.asyncSpecifier != nil,
                modifiers: decl.modifiers,
                body: decl.body.map(Syntax.init)
            )
        } else if let decl = node.as(InitializerDeclSyntax.self) {
            enterFunction(
                Syntax(decl),
                name: "init",
                signature: decl.signature.parameterClause,
                isAsync: decl.signature.effectSpecifiers?.asyncSpecifier != nil,
                modifiers: decl.modifiers,
                body: decl.body.map(Syntax.init),
                isInitializer: true
            )
        } else if let decl = node.as(VariableDeclSyntax.self) {
            walkVariable(decl)
        } else if let decl = node.as(StructDeclSyntax.self) {
            enterType(decl.name.text, members: decl.memberBlock)
        } else if let decl = node.as(ClassDeclSyntax.self) {
            enterType(decl.name.text, members: decl.memberBlock)
        } else if let decl = node.as(EnumDeclSyntax.self) {
            enterType(decl.name.text, members: decl.memberBlock)
        } else if let decl = node.as(ActorDeclSyntax.self) {
            enterType(decl.name.text, members: decl.memberBlock, isActor: true)
        } else if let decl = node.as(ProtocolDeclSyntax.self) {
            index.declareType(decl.name.text, isProtocol: true)
        } else if let decl = node.as(ExtensionDeclSyntax.self) {
            let name = Self.typeName(decl.extendedType) ?? decl.extendedType.trimmedDescription
            typeStack.append(name)
            let saved = current
            current = nil
            walkChildren(Syntax(decl.memberBlock))
            current = saved
            typeStack.removeLast()
        } else if let call = node.as(FunctionCallExprSyntax.self) {
            walkCall(call)
        } else if let closure = node.as(ClosureExprSyntax.self) {
            // A closure not passed to a call (stored, or called at once) runs where it is called:
            // its calls count as the enclosing code's.
            walkClosure(closure, passedTo: nil)
        } else {
            walkChildren(node)
        }
    }

    mutating func enterType(_ name: String, members: MemberBlockSyntax, isActor: Bool = false) {
        index.declareType(name, isActor: isActor)
        typeStack.append(name)
        let saved = current
        current = nil
        walkChildren(Syntax(members))
        current = saved
        typeStack.removeLast()
    }

    mutating func enterFunction(
        _ node: Syntax,
        name: String,
        signature: FunctionParameterClauseSyntax,
        isAsync: Bool,
        modifiers: DeclModifierListSyntax,
        body: Syntax?,
        isInitializer: Bool = false
    ) {
        let unit = index.newUnit(
            kind: .function,
            name: name,
            typeName: typeStack.last,
            parent: current?.id,
            location: location(node)
        )
        unit.isAsync = isAsync
        for modifier in modifiers {
            switch modifier.name.tokenKind {
            case .keyword(.static), .keyword(.class): unit.isStatic = true
            case .keyword(.nonisolated): unit.isNonisolated = true
            default: break
            }
        }
        if isInitializer { unit.isNonisolated = true }
        for parameter in signature.parameters {
            let label = parameter.firstName.tokenKind == .wildcard ? nil : parameter.firstName.text
            unit.parameters.append(
                Parameter(
                    label: label,
                    hasDefault: parameter.defaultValue != nil,
                    isVariadic: parameter.ellipsis != nil
                )
            )
            let local = (parameter.secondName ?? parameter.firstName).text
            unit.localNames.insert(local)
            if let type = Self.typeName(parameter.type) { unit.variables[local] = type }
        }
        guard let body else { return }
        let saved = current
        current = unit
        walkChildren(body)
        current = saved
    }

    mutating func walkVariable(_ decl: VariableDeclSyntax) {
        for binding in decl.bindings {
            let name = binding.pattern.as(IdentifierPatternSyntax.self)?.identifier.text
            if let name {
                if let current {
                    current.localNames.insert(name)
                } else if let owner = typeStack.last {
                    index.declarePropertyName(name, in: owner)
                }
            }
            var type = binding.typeAnnotation.flatMap { Self.typeName($0.type) }
            if type == nil, let value = binding.initializer?.value { type = Self.constructedType(value) }
            if let name, let type {
                if let current {
                    current.variables[name] = type
                } else if let owner = typeStack.last {
                    index.declareProperty(name, type: type, in: owner)
                }
            }
            if let initializer = binding.initializer { walk(Syntax(initializer)) }
            guard let accessors = binding.accessorBlock else { continue }
            // A computed property: its getter (and any accessor) is a function of its own.
            switch accessors.accessors {
            case .getter(let body):
                let unit = index.newUnit(
                    kind: .function,
                    name: name ?? "get",
                    typeName: typeStack.last,
                    parent: current?.id,
                    location: location(binding)
                )
                unit.isStatic = decl.modifiers.contains { $0.name.tokenKind == .keyword(.static) }
                unit.isNonisolated = decl.modifiers.contains { $0.name.tokenKind == .keyword(.nonisolated) }
                let saved = current
                current = unit
                walkChildren(Syntax(body))
                current = saved
            case .accessors(let list):
                for accessor in list {
                    let unit = index.newUnit(
                        kind: .function,
                        name: name ?? accessor.accessorSpecifier.text,
                        typeName: typeStack.last,
                        parent: current?.id,
                        location: location(accessor)
                    )
                    unit.isAsync = accessor.effectSpecifiers?.asyncSpecifier != nil
                    unit.isStatic = decl.modifiers.contains { $0.name.tokenKind == .keyword(.static) }
                    unit.isNonisolated = decl.modifiers.contains { $0.name.tokenKind == .keyword(.nonisolated) }
                    guard let body = accessor.body else { continue }
                    let saved = current
                    current = unit
                    walkChildren(Syntax(body))
                    current = saved
                }
            }
        }
    }

    mutating func walkCall(_ call: FunctionCallExprSyntax) {
        let callee = Self.callee(call.calledExpression)
        var arguments = call.arguments.map { Argument(label: $0.label?.text) }
        if call.trailingClosure != nil { arguments.append(Argument(label: nil, isTrailingClosure: true)) }
        for extra in call.additionalTrailingClosures {
            arguments.append(Argument(label: extra.label.text, isTrailingClosure: true))
        }
        let literal = call.arguments.first?.expression.as(StringLiteralExprSyntax.self).map { literal in
            literal.segments.compactMap { $0.as(StringSegmentSyntax.self)?.content.text }.joined()
        }
        let nameNode: Syntax =
            call.calledExpression.as(MemberAccessExprSyntax.self).map { Syntax($0.declName) }
            ?? Syntax(call.calledExpression)
        if let current {
            current.calls.append(
                CallSite(
                    callee: callee,
                    arguments: arguments,
                    location: location(nameNode),
                    isAwaited: Self.isAwaited(call),
                    firstStringLiteral: literal
                )
            )
        }
        // The called expression may itself contain calls (`a.b().c()`).
        walk(Syntax(call.calledExpression))
        for argument in call.arguments {
            if let closure = argument.expression.as(ClosureExprSyntax.self) {
                walkClosure(closure, passedTo: callee)
            } else {
                walk(Syntax(argument.expression))
            }
        }
        if let closure = call.trailingClosure { walkClosure(closure, passedTo: callee) }
        for extra in call.additionalTrailingClosures { walkClosure(extra.closure, passedTo: callee) }
    }

    mutating func walkClosure(_ closure: ClosureExprSyntax, passedTo callee: Callee?) {
        let qualified: String? = callee.map {
            switch $0 {
            case .member(.identifier(let type), let name): "\(type).\(name)"
            default: $0.baseName
            }
        }
        let starter: String? = callee.flatMap { callee in
            switch callee {
            case .free("Task"), .initializer("Task"): "Task {}"
            case .member(.identifier("Task"), let name) where Self.taskStarters.contains(name): "Task.\(name) {}"
            case .member(_, let name) where Self.taskStarters.contains(name): "\(name) {}"
            default: nil
            }
        }
        let isDetached =
            callee.map { callee in
                index.catalogue.offloading.contains(callee.baseName)
                    || qualified.map { index.catalogue.accepting.contains($0) } == true
                    || qualified == "Blocking.call"
                    || callee == .free("Thread") || callee == .initializer("Thread")
            } ?? false
        let isAsync =
            starter != nil || closure.signature?.effectSpecifiers?.asyncSpecifier != nil
            || Self.awaits(Syntax(closure.statements))
        guard isAsync || isDetached || current == nil else {
            // A synchronous closure that runs where it is passed (`map`, `withLock`): its calls
            // are the enclosing code's.
            walkChildren(Syntax(closure.statements))
            return
        }
        let description = starter ?? (isDetached ? "\(qualified ?? "closure") {}" : "closure")
        let unit = index.newUnit(
            kind: .closure(description),
            name: description,
            typeName: typeStack.last,
            parent: current?.id,
            location: location(closure)
        )
        unit.isAsync = isAsync && !isDetached
        unit.isDetached = isDetached || (current == nil && !isAsync)
        unit.ownerName = current.map(Self.ownerName)
        let saved = current
        current = unit
        walkChildren(Syntax(closure.statements))
        current = saved
    }

    /// The function a closure is written in, for its description.
    static func ownerName(_ unit: CodeUnit) -> String {
        switch unit.kind {
        case .function, .topLevel: unit.displayName
        case .closure: unit.ownerName ?? unit.displayName
        }
    }

    // MARK: Reading expressions

    static func callee(_ expression: ExprSyntax) -> Callee {
        if let reference = expression.as(DeclReferenceExprSyntax.self) {
            // `Type(…)` too: whether a capitalised name is a type or a C function (`PQexec`) is
            // known only once every file is read.
            return .free(reference.baseName.text)
        }
        if let member = expression.as(MemberAccessExprSyntax.self) {
            let name = member.declName.baseName.text
            guard let base = member.base else { return .member(.unknown, name) }
            if name == "init", let type = base.as(DeclReferenceExprSyntax.self)?.baseName.text {
                return .initializer(type)
            }
            return .member(receiver(base), name)
        }
        if let specialized = expression.as(GenericSpecializationExprSyntax.self) {
            return callee(specialized.expression)
        }
        return .member(.unknown, expression.trimmedDescription)
    }

    static func receiver(_ expression: ExprSyntax) -> Receiver {
        if let reference = expression.as(DeclReferenceExprSyntax.self) {
            let name = reference.baseName.text
            return name == "self" ? .selfValue : .identifier(name)
        }
        if expression.is(SuperExprSyntax.self) { return .selfValue }
        if let optional = expression.as(OptionalChainingExprSyntax.self) { return receiver(optional.expression) }
        if let forced = expression.as(ForceUnwrapExprSyntax.self) { return receiver(forced.expression) }
        if let member = expression.as(MemberAccessExprSyntax.self), let base = member.base {
            let inner = receiver(base)
            if case .identifier(let type) = inner, type.first?.isUppercase == true {
                // `DispatchQueue.main`, `FileHandle.standardInput`: an instance of the type.
                return .instance(of: type)
            }
            return .property(inner, member.declName.baseName.text)
        }
        if let call = expression.as(FunctionCallExprSyntax.self) {
            // `DispatchQueue.global()`, `Type(…)`: an instance of the type.
            if let type = constructedType(ExprSyntax(call)) { return .instance(of: type) }
        }
        return .unknown
    }

    /// The type `Type(…)`, `Type.init(…)`, `Type.shared`, `Type.make(…)` produce, assumed to be
    /// `Type` itself.
    static func constructedType(_ expression: ExprSyntax) -> String? {
        var expression = expression
        if let tried = expression.as(TryExprSyntax.self) { expression = tried.expression }
        if let call = expression.as(FunctionCallExprSyntax.self) { expression = call.calledExpression }
        if let specialized = expression.as(GenericSpecializationExprSyntax.self) { expression = specialized.expression }
        if let reference = expression.as(DeclReferenceExprSyntax.self) {
            let name = reference.baseName.text
            return name.first?.isUppercase == true ? name : nil
        }
        if let member = expression.as(MemberAccessExprSyntax.self),
            let base = member.base?.as(DeclReferenceExprSyntax.self)?.baseName.text,
            base.first?.isUppercase == true
        {
            return base
        }
        return nil
    }

    /// The nominal type a written type names: `DispatchSemaphore?` → `DispatchSemaphore`,
    /// `Foundation.NSLock` → `NSLock`, `Mutex<Int>` → `Mutex`, `any Inventory` → `Inventory`.
    static func typeName(_ type: TypeSyntax) -> String? {
        if let identifier = type.as(IdentifierTypeSyntax.self) { return identifier.name.text }
        if let member = type.as(MemberTypeSyntax.self) { return member.name.text }
        if let optional = type.as(OptionalTypeSyntax.self) { return typeName(optional.wrappedType) }
        if let implicit = type.as(ImplicitlyUnwrappedOptionalTypeSyntax.self) { return typeName(implicit.wrappedType) }
        if let some = type.as(SomeOrAnyTypeSyntax.self) { return typeName(some.constraint) }
        if let attributed = type.as(AttributedTypeSyntax.self) { return typeName(attributed.baseType) }
        return nil
    }

    /// Whether a call is `await`ed: its value, or a member of it, is the operand of `await`.
    static func isAwaited(_ call: FunctionCallExprSyntax) -> Bool {
        var node = Syntax(call)
        while let parent = node.parent {
            if parent.is(AwaitExprSyntax.self) { return true }
            if parent.is(MemberAccessExprSyntax.self) || parent.is(OptionalChainingExprSyntax.self)
                || parent.is(ForceUnwrapExprSyntax.self) || parent.is(TryExprSyntax.self)
            {
                node = parent
                continue
            }
            if let outer = parent.as(FunctionCallExprSyntax.self), outer.calledExpression.id == node.id {
                node = parent
                continue
            }
            return false
        }
        return false
    }

    /// Whether code awaits, outside the closures and functions nested in it.
    static func awaits(_ node: Syntax) -> Bool {
        final class Finder: SyntaxVisitor {
            var found = false
            override func visit(_ node: AwaitExprSyntax) -> SyntaxVisitorContinueKind {
                found = true
                return .skipChildren
            }
            override func visit(_ node: ForStmtSyntax) -> SyntaxVisitorContinueKind {
                if node.awaitKeyword != nil { found = true }
                return found ? .skipChildren : .visitChildren
            }
            override func visit(_ node: ClosureExprSyntax) -> SyntaxVisitorContinueKind { .skipChildren }
            override func visit(_ node: FunctionDeclSyntax) -> SyntaxVisitorContinueKind { .skipChildren }
        }
        if node.is(AwaitExprSyntax.self) { return true }
        let finder = Finder(viewMode: .sourceAccurate)
        finder.walk(node)
        return finder.found
    }
}
