"""The kernel: task lifecycle, states, dependency graph, engine, hook specs, plugin manager,
registry, clock, errors and decisions. It imports nothing above it."""
