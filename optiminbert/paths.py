"""Where the study keeps what it makes, relative to the project root (DVC's outputs)."""

from pathlib import Path

RAW = Path("data/raw")  # the task files, copied or downloaded from the data source
PREPARED = Path("data/prepared")
TEACHERS = Path("data/teachers")  # the teachers' predictions on the training data (distillation)
MODELS = Path("models")
METRICS = Path("metrics")
PLOTS = Path("plots")
LIVE = Path("dvclive")  # each run's training curves and latest metrics, as DVCLive writes them
PREDICTIONS = Path("predictions")
ABLATION = Path("ablation")
STUDY = Path("study")  # the multitask-methods study (study/dvc.yaml)
RESUME = Path(".resume")  # interrupted runs' states; outside models/, which DVC clears before a stage runs
