"""One module per CLI command; each is thin and leaves the work to the package."""
