"""The bus the configuration asks for: ``[bus] kind = "embedded" | "kafka"``.

Apart from :mod:`continuum.bus` (the interface, which must not know its implementations) so that the
Kafka client is imported only when Kafka is chosen.
"""

from __future__ import annotations

from continuum.bus import Bus, EmbeddedBus
from continuum.config import Config


def make_bus(cfg: Config) -> Bus:
    """A :class:`~continuum.bus.Bus` with ``[bus].partitions`` partitions per topic."""
    if cfg.bus.kind == "kafka":
        from continuum.kafka_bus import KafkaBus

        return KafkaBus(cfg.kafka, partitions=cfg.bus.partitions)
    return EmbeddedBus(partitions=cfg.bus.partitions)
