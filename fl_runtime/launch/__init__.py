"""Running the Flower apps: processes, credentials, the FAB, following a run, and the local federation."""
