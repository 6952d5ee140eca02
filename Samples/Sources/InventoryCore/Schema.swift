/// The inventory's tables, in each database's dialect: every form creates the same schema.
public enum InventorySchema {
    /// PostgreSQL's statements, run in order.
    public static let postgres = [
        "SET client_min_messages = warning",  // no notices for the tables that do not exist yet
        "DROP TABLE IF EXISTS reservations",
        "DROP TABLE IF EXISTS products",
        """
        CREATE TABLE products (
            sku text PRIMARY KEY,
            name text NOT NULL,
            stock integer NOT NULL CHECK (stock >= 0),
            reserved integer NOT NULL DEFAULT 0 CHECK (reserved >= 0 AND reserved <= stock)
        )
        """,
        """
        CREATE TABLE reservations (
            id serial PRIMARY KEY,
            sku text NOT NULL REFERENCES products (sku),
            quantity integer NOT NULL CHECK (quantity > 0),
            order_ref text NOT NULL
        )
        """,
    ]

    /// MariaDB's statements, run in order.
    public static let mariaDB = [
        "DROP TABLE IF EXISTS reservations",
        "DROP TABLE IF EXISTS products",
        """
        CREATE TABLE products (
            sku varchar(64) PRIMARY KEY,
            name varchar(255) NOT NULL,
            stock integer NOT NULL CHECK (stock >= 0),
            reserved integer NOT NULL DEFAULT 0 CHECK (reserved >= 0 AND reserved <= stock)
        ) ENGINE = InnoDB
        """,
        """
        CREATE TABLE reservations (
            id integer AUTO_INCREMENT PRIMARY KEY,
            sku varchar(64) NOT NULL,
            quantity integer NOT NULL CHECK (quantity > 0),
            order_ref varchar(255) NOT NULL,
            FOREIGN KEY (sku) REFERENCES products (sku)
        ) ENGINE = InnoDB
        """,
    ]

    /// SQLite's statements, run in order.
    public static let sqlite = [
        "DROP TABLE IF EXISTS reservations",
        "DROP TABLE IF EXISTS products",
        """
        CREATE TABLE products (
            sku text PRIMARY KEY,
            name text NOT NULL,
            stock integer NOT NULL CHECK (stock >= 0),
            reserved integer NOT NULL DEFAULT 0 CHECK (reserved >= 0 AND reserved <= stock)
        ) STRICT
        """,
        """
        CREATE TABLE reservations (
            id integer PRIMARY KEY,
            sku text NOT NULL REFERENCES products (sku),
            quantity integer NOT NULL CHECK (quantity > 0),
            order_ref text NOT NULL
        ) STRICT
        """,
    ]
}
