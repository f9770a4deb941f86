"""Planning at scale: the per-rank memory and per-step communication model of `plan-memory`
(`monosemantic.scale.memory`); the distributed trainer itself is not on main yet."""
