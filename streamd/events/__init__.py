"""The event history: one row per tracked object in a real database (SQLite by default,
PostgreSQL for many hosts), written off the loop, queryable over ``/api/events``."""
