"""Automated interpretability: LLM explanations of features and their scores.

- `explain.explain(ExplainConfig)` / `monosemantic explain RUN`: labels + explanations.
- `score.score(ScoreConfig)` / `monosemantic score RUN`: specificity rubric, detection,
  fuzzing, simulation, on held-out examples.
- `neurons.build_neuron_db(NeuronsConfig)` / `monosemantic neurons RUN`: the MLP-neuron
  baseline as a feature database.
- `backends`: `LLMOptions`, `make_backend` (local transformers model, OpenAI-compatible HTTP,
  Anthropic Messages API), all behind `complete(messages, ...) -> Completion`;
  `cache.LLMClient` adds the SQLite call cache, usage and cost accounting.
Results go to the run's features.sqlite (`explanations`, `scores`) through `results.ResultsDB`.
"""
