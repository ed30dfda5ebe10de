"""The `cpv` command: parses, calls the library, renders. Owns click, tqdm and exit codes."""
