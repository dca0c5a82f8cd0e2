"""One module per CLI verb; each imports heavy libraries inside its function body."""
