"""mathaug: seed math problems in, verified, deduplicated SFT shards out."""

__version__ = "0.1.0"
