"""The feature database's SQLite schema (one file per run: RUN/features.sqlite).

Example windows are stored as BLOBs: `tokens` little-endian int32, `acts` little-endian float32,
one value per window cell (token -1 never occurs: windows are stored trimmed). Token strings
appear once in `vocab`, so readers need no tokenizer. Lists (histogram edges and counts) are
JSON text. Bump SCHEMA_VERSION on any change a reader would notice.
"""

from __future__ import annotations

SCHEMA_VERSION = 1
DB_FILENAME = "features.sqlite"

EXAMPLE_KINDS = ("top", "interval", "random", "zero")
NEIGHBOUR_KINDS = ("decoder_cosine", "cooccurrence")

SCHEMA = """
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL                  -- JSON
);
CREATE TABLE features (
    id INTEGER PRIMARY KEY,
    max_act REAL NOT NULL,
    count INTEGER NOT NULL,              -- tokens where the feature is > 0
    density REAL NOT NULL,               -- count / tokens analysed
    mean_act REAL NOT NULL               -- mean activation where active (0 if never)
);
CREATE TABLE histograms (
    feature INTEGER PRIMARY KEY REFERENCES features(id),
    edges TEXT NOT NULL,                 -- JSON, H + 1 log-spaced edges up to max_act
    counts TEXT NOT NULL,                -- JSON, H + 1 counts; counts[0] lies below edges[0]
    below INTEGER NOT NULL               -- = counts[0]
);
CREATE TABLE intervals (
    feature INTEGER NOT NULL REFERENCES features(id),
    idx INTEGER NOT NULL,
    lo REAL NOT NULL,
    hi REAL NOT NULL,
    count INTEGER NOT NULL,
    share REAL NOT NULL,                 -- count / all activations of the feature
    PRIMARY KEY (feature, idx)
);
CREATE TABLE examples (
    id INTEGER PRIMARY KEY,
    feature INTEGER NOT NULL REFERENCES features(id),
    kind TEXT NOT NULL,                  -- top | interval | random | zero
    interval INTEGER,                    -- interval index for kind = interval
    rank INTEGER NOT NULL,               -- order within (feature, kind, interval)
    row INTEGER NOT NULL,                -- store row of the peak token
    activation REAL NOT NULL,            -- activation at the peak token
    peak INTEGER NOT NULL,               -- index of the peak token in the window
    tokens BLOB NOT NULL,                -- int32 token ids of the window
    acts BLOB NOT NULL                   -- float32 activations of the window
);
CREATE INDEX examples_by_feature ON examples(feature, kind, interval, rank);
CREATE TABLE vocab (
    token_id INTEGER PRIMARY KEY,
    text TEXT NOT NULL
);
CREATE TABLE neighbours (
    feature INTEGER NOT NULL REFERENCES features(id),
    kind TEXT NOT NULL,                  -- decoder_cosine | cooccurrence
    rank INTEGER NOT NULL,
    other INTEGER NOT NULL,
    score REAL NOT NULL,
    PRIMARY KEY (feature, kind, rank)
);
CREATE TABLE logit_effects (
    feature INTEGER NOT NULL REFERENCES features(id),
    direction TEXT NOT NULL,             -- up | down
    rank INTEGER NOT NULL,
    token_id INTEGER NOT NULL,
    value REAL NOT NULL,
    PRIMARY KEY (feature, direction, rank)
);
CREATE TABLE map_coords (
    feature INTEGER PRIMARY KEY REFERENCES features(id),
    x REAL NOT NULL,
    y REAL NOT NULL,
    cluster INTEGER
);
CREATE TABLE explanations (
    id INTEGER PRIMARY KEY,
    feature INTEGER NOT NULL REFERENCES features(id),
    explainer TEXT NOT NULL,             -- e.g. the LLM and prompt that wrote it
    text TEXT NOT NULL,
    created TEXT NOT NULL,               -- ISO 8601
    details TEXT                         -- JSON
);
CREATE INDEX explanations_by_feature ON explanations(feature);
CREATE TABLE scores (
    id INTEGER PRIMARY KEY,
    feature INTEGER NOT NULL REFERENCES features(id),
    explanation INTEGER REFERENCES explanations(id),
    scorer TEXT NOT NULL,                -- e.g. specificity_rubric, detection, fuzzing, simulation
    score REAL NOT NULL,
    created TEXT NOT NULL,
    details TEXT                         -- JSON
);
CREATE INDEX scores_by_feature ON scores(feature);
"""
