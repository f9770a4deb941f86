"""SAE training: `TrainConfig` + `train(cfg) -> run dir` live in `monosemantic.train.trainer`
(imported lazily by the CLI); schedules, dead-feature tracking, metrics and checkpoints beside
it."""
