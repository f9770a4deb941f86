"""The feature database: one SQLite file per run (RUN/features.sqlite), read without the model."""

from monosemantic.featuredb.reader import (
           Example,
           FeatureCard,
           FeatureDB,
           FeatureDBError,
           Interval,
)
from monosemantic.featuredb.schema import DB_FILENAME, SCHEMA_VERSION

__all__ = ["DB_FILENAME", "SCHEMA_VERSION", "Example", "FeatureCard", "FeatureDB",
           "FeatureDBError", "Interval"]
