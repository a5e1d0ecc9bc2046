"""The Flower apps: exactly what the FAB carries, and so what every client executes (with ``learning``)."""
