"""Running the federation across AWS accounts, and its rehearsal with folders and local processes."""
