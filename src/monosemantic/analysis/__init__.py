"""Feature analysis: the streaming passes over a store (statistics, examples, intervals), decoder
analyses (logit effects, nearest features), prompt inspection. `analyze` lives in
`monosemantic.analysis.run` (it imports the store and SAE packages)."""

from monosemantic.analysis.onepass import FeatureAnalysis, PassOptions, analyze_batches

__all__ = ["FeatureAnalysis", "PassOptions", "analyze_batches"]
