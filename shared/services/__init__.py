"""Use cases. Each takes its ports as arguments, so tests pass real adapters or in-process fakes."""
