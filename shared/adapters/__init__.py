"""The only modules that do I/O."""
