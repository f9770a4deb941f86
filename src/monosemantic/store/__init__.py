"""The feature database: one SQLite file per run (RUN/features.sqlite), read without the model."""

from monosemantic.store.featuredb import (
           Example,
           FeatureCard,
           FeatureDB,
           FeatureDBError,
           Interval,
)
from monosemantic.store.schema import DB_FILENAME, SCHEMA_VERSION

__all__ = ["DB_FILENAME", "SCHEMA_VERSION", "Example", "FeatureCard", "FeatureDB",
           "FeatureDBError", "Interval"]
