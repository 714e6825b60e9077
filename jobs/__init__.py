"""vidx entry points: the CLI, the index job and config loading."""
