import InventoryCore
import Testing

/// The suites that drop and create the inventory's tables on the shared servers: one at a time.
@Suite(.serialized)
enum InventoryTables {}

extension InventoryTables {
    /// One behavioural suite for every form of the inventory service, on both databases: the legacy
    /// service, the wrapped one and the migrated one must answer the same inputs with the same
    /// results and the same errors, so each migration step keeps behaviour.
    @Suite("The inventory service behaves the same legacy, wrapped and migrated", .serialized)
    struct InventoryBehaviourTests {
        @Test("adding and reading products", arguments: InventoryForm.all)
        func addAndRead(form: InventoryForm) async throws {
            try await form.withInventory { inventory in
                try await inventory.addProduct(sku: "MUG-1", name: "Mug", stock: 12)
                try await inventory.addProduct(sku: "EMPTY", name: "Sold out", stock: 0)
                #expect(
                    try await inventory.product(sku: "MUG-1")
                        == Product(sku: "MUG-1", name: "Mug", stock: 12, reserved: 0)
                )
                #expect(try await inventory.product(sku: "EMPTY")?.available == 0)
                #expect(try await inventory.product(sku: "NOPE") == nil)
                await #expect(throws: InventoryError.duplicateProduct(sku: "MUG-1")) {
                    try await inventory.addProduct(sku: "MUG-1", name: "Another mug", stock: 1)
                }
                await #expect(throws: InventoryError.invalidQuantity(-1)) {
                    try await inventory.addProduct(sku: "NEG", name: "Negative", stock: -1)
                }
                // The refused additions changed nothing.
                #expect(try await inventory.product(sku: "MUG-1")?.name == "Mug")
                #expect(try await inventory.product(sku: "NEG") == nil)
            }
        }

        @Test("text with quotes, backslashes and non-ASCII characters round-trips", arguments: InventoryForm.all)
        func awkwardText(form: InventoryForm) async throws {
            try await form.withInventory { inventory in
                let sku = #"O'Brien\"#
                let name = #"the "best" mug — ☕ 'quoted' \n not a newline"#
                try await inventory.addProduct(sku: sku, name: name, stock: 3)
                #expect(try await inventory.product(sku: sku) == Product(sku: sku, name: name, stock: 3, reserved: 0))
                let id = try await inventory.reserve(sku: sku, quantity: 1, order: "order 'x'")
                try await inventory.release(reservation: id)
                #expect(try await inventory.product(sku: sku)?.reserved == 0)
            }
        }

        @Test("reservations take units atomically and are refused when too few are left", arguments: InventoryForm.all)
        func reserve(form: InventoryForm) async throws {
            try await form.withInventory { inventory in
                try await inventory.addProduct(sku: "MUG-1", name: "Mug", stock: 5)
                let first = try await inventory.reserve(sku: "MUG-1", quantity: 3, order: "A")
                #expect(
                    try await inventory.product(sku: "MUG-1")
                        == Product(sku: "MUG-1", name: "Mug", stock: 5, reserved: 3)
                )
                await #expect(throws: InventoryError.insufficientStock(sku: "MUG-1", requested: 3, available: 2)) {
                    try await inventory.reserve(sku: "MUG-1", quantity: 3, order: "B")
                }
                let second = try await inventory.reserve(sku: "MUG-1", quantity: 2, order: "C")
                #expect(second != first)
                #expect(try await inventory.product(sku: "MUG-1")?.available == 0)
                await #expect(throws: InventoryError.unknownProduct(sku: "NOPE")) {
                    try await inventory.reserve(sku: "NOPE", quantity: 1, order: "D")
                }
                await #expect(throws: InventoryError.invalidQuantity(0)) {
                    try await inventory.reserve(sku: "MUG-1", quantity: 0, order: "E")
                }
            }
        }

        @Test("releasing returns the units once; a second release is refused", arguments: InventoryForm.all)
        func release(form: InventoryForm) async throws {
            try await form.withInventory { inventory in
                try await inventory.addProduct(sku: "MUG-1", name: "Mug", stock: 5)
                let id = try await inventory.reserve(sku: "MUG-1", quantity: 4, order: "A")
                try await inventory.release(reservation: id)
                #expect(try await inventory.product(sku: "MUG-1")?.available == 5)
                await #expect(throws: InventoryError.unknownReservation(id: id)) {
                    try await inventory.release(reservation: id)
                }
                #expect(try await inventory.product(sku: "MUG-1")?.available == 5)
            }
        }

        @Test(
            "restocking adds units; unknown products and non-positive quantities are refused",
            arguments: InventoryForm.all
        )
        func restock(form: InventoryForm) async throws {
            try await form.withInventory { inventory in
                try await inventory.addProduct(sku: "MUG-1", name: "Mug", stock: 1)
                _ = try await inventory.reserve(sku: "MUG-1", quantity: 1, order: "A")
                try await inventory.restock(sku: "MUG-1", quantity: 9)
                #expect(
                    try await inventory.product(sku: "MUG-1")
                        == Product(sku: "MUG-1", name: "Mug", stock: 10, reserved: 1)
                )
                await #expect(throws: InventoryError.unknownProduct(sku: "NOPE")) {
                    try await inventory.restock(sku: "NOPE", quantity: 1)
                }
                await #expect(throws: InventoryError.invalidQuantity(-2)) {
                    try await inventory.restock(sku: "MUG-1", quantity: -2)
                }
            }
        }

        @Test("low-stock lists what is below the threshold, by SKU", arguments: InventoryForm.all)
        func lowStock(form: InventoryForm) async throws {
            try await form.withInventory { inventory in
                try await inventory.addProduct(sku: "C", name: "Cup", stock: 2)
                try await inventory.addProduct(sku: "A", name: "Apron", stock: 10)
                try await inventory.addProduct(sku: "B", name: "Bowl", stock: 6)
                _ = try await inventory.reserve(sku: "A", quantity: 8, order: "X")
                #expect(try await inventory.lowStock(below: 5).map(\.sku) == ["A", "C"])
                #expect(try await inventory.lowStock(below: 100).map(\.sku) == ["A", "B", "C"])
                #expect(try await inventory.lowStock(below: 0).isEmpty)
            }
        }

        @Test("concurrent reservations never oversell", arguments: InventoryForm.all)
        func concurrentReservations(form: InventoryForm) async throws {
            try await form.withInventory { inventory in
                try await inventory.addProduct(sku: "HOT", name: "Popular", stock: 10)
                let outcomes = try await withThrowingTaskGroup(of: Bool.self) { group in
                    for order in 0..<25 {
                        group.addTask {
                            do {
                                _ = try await inventory.reserve(sku: "HOT", quantity: 1, order: "order-\(order)")
                                return true
                            } catch InventoryError.insufficientStock {
                                return false
                            }
                        }
                    }
                    return try await group.reduce(into: [Bool]()) { $0.append($1) }
                }
                #expect(outcomes.count(where: { $0 }) == 10)
                #expect(outcomes.count(where: { !$0 }) == 15)
                #expect(
                    try await inventory.product(sku: "HOT")
                        == Product(sku: "HOT", name: "Popular", stock: 10, reserved: 10)
                )
            }
        }
    }
}
