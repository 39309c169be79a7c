"""Task kinds (kinds.py): what a raw output means for classification, binary and regression
tasks, by hand; and that every task names its kind."""

from __future__ import annotations

import numpy as np
import torch

from optiminbert.data import TASKS
from optiminbert.kinds import KINDS


def test_each_task_has_its_kind_and_normalised_scores() -> None:
    assert {t: spec.kind.name for t, spec in TASKS.items()} == {
        "sst": "classification", "cfimdb": "classification", "quora": "binary", "sts": "regression"
    }
    # Every metric on [0, 1], as the CS224N leaderboard averages them: Pearson r becomes (r + 1) / 2.
    assert TASKS["sts"].kind.normalised(0.6) == 0.8 and TASKS["sts"].kind.normalised(-1.0) == 0.0
    assert TASKS["sst"].kind.normalised(0.7) == 0.7 and TASKS["quora"].kind.normalised(0.25) == 0.25
    assert KINDS["classification"].label_range(5) == (0.0, 4.0, True)
    assert KINDS["regression"].label_range(1) == (0.0, 5.0, False)


def test_predictions_are_decided_from_probabilities_except_where_rounding_would_tie() -> None:
    classification, binary, regression = KINDS["classification"], KINDS["binary"], KINDS["regression"]
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 3.0, 1.0]])
    probs = classification.probabilities(logits)
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-6)
    assert classification.predictions(logits).tolist() == classification.decide(probs).tolist() == [0, 1]
    np.testing.assert_allclose(classification.confidence(logits), probs.max(-1))

    raw = torch.tensor([2.0, -0.5, 1e-9])  # the last one's sigmoid rounds to exactly 0.5 in fp32
    probs = binary.probabilities(raw)
    assert probs[2] == 0.5
    assert binary.decide(probs).tolist() == [1, 0, 0]
    assert binary.predictions(raw).tolist() == [1, 0, 1]  # the logit's sign decides, not the rounded probability
    np.testing.assert_allclose(binary.confidence(raw), np.maximum(probs, 1 - probs))

    scores = torch.tensor([4.25, 0.5])
    assert regression.predictions(scores).tolist() == regression.decide(regression.probabilities(scores)).tolist() == [4.25, 0.5]
    assert regression.confidence(scores).tolist() == [1.0, 1.0]  # no notion of sureness for a score
