"""Storage on SQLAlchemy (async, aiosqlite by default): engine, tables, unit of work, one repository
module per port, Alembic migrations."""
