"""``continuum evaluate``: prequential, task-free measurement of adaptation and forgetting (DESIGN §5)."""
