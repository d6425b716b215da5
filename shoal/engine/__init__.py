"""The pure swarm engine: ``now`` is always a parameter, never read from a clock."""
