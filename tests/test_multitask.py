"""The task heads on the encoder (multitask.py): output shapes in both pair designs, siamese STS
as the scaled cosine, the sentence-embedding layer and the token-alignment features, by hand."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from optiminbert.batching import pad, pad_side_by_side
from optiminbert.model import BertModel
from optiminbert.multitask import (
    ALIGNMENT_SCALE,
    STS_SCALE,
    MultitaskBert,
    SentenceEmbedding,
    mean_pool,
    token_alignment,
)
from optiminbert.phases import STUDY_TASKS

STUDY = list(STUDY_TASKS)


@pytest.fixture
def encoder(tiny_checkpoint: Path) -> BertModel:
    return BertModel.from_pretrained(tiny_checkpoint)


def random_batch(rows: int, vocab_size: int, pair: bool = False, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random ids with rows of lengths 7, 5, 3, ... (right-padded), segment ids for pairs."""
    generator = torch.Generator().manual_seed(seed)
    width = 7
    ids = torch.randint(5, vocab_size, (rows, width), generator=generator)
    mask = torch.zeros_like(ids)
    for row in range(rows):
        mask[row, : width - 2 * (row % 3)] = 1
    batch = {"input_ids": ids * mask, "attention_mask": mask}
    if pair:
        batch["token_type_ids"] = torch.zeros_like(ids)
        batch["token_type_ids"][:, 3:] = 1
    return batch


def side_by_side_batch(rows: int, vocab_size: int, seed: int = 0) -> tuple[dict[str, torch.Tensor], list]:
    """``rows`` random sentence pairs of 3 to 7 tokens, side by side (``pad_side_by_side``), and the pairs."""
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(3, 8, (rows, 2), generator=generator).tolist()
    pairs = [tuple(torch.randint(5, vocab_size, (n,), generator=generator).tolist() for n in row) for row in lengths]
    return pad_side_by_side(pairs), pairs


@pytest.mark.parametrize("pairs", ["cross", "siamese"])
def test_output_shapes_of_every_task_in_both_designs(encoder: BertModel, pairs: str) -> None:
    model = MultitaskBert(encoder, STUDY + ["cfimdb"], pairs=pairs).eval()
    vocab, rows = encoder.config.vocab_size, 3
    pair_batch = random_batch(rows, vocab, pair=True) if pairs == "cross" else side_by_side_batch(rows, vocab)[0]
    with torch.no_grad():
        assert model("sst", random_batch(rows, vocab)).shape == (rows, 5)
        assert model("cfimdb", random_batch(rows, vocab)).shape == (rows, 2)
        paraphrase = model("quora", pair_batch)
        similarity = model("sts", pair_batch)
    if pairs == "cross":
        assert paraphrase.shape == similarity.shape == (rows,)
    else:  # the logit and the score, each beside the embeddings: the very u and v whose cosine is siamese STS
        assert paraphrase.logit.shape == similarity.logit.shape == (rows,)
        assert paraphrase.embeddings.shape == (rows, 2, encoder.config.hidden_size)
        torch.testing.assert_close(similarity.embeddings, paraphrase.embeddings)
        u, v = paraphrase.embeddings.unbind(1)
        torch.testing.assert_close(5 * torch.cosine_similarity(u, v, dim=-1), similarity.logit)
    assert ("sts" in model.heads) == (pairs == "cross")  # siamese STS is the cosine, no head


def test_siamese_sts_is_five_times_the_cosine_of_the_embeddings(encoder: BertModel) -> None:
    """Computed by hand from each sentence encoded in a row of its own."""
    model = MultitaskBert(encoder, ["sts"], pairs="siamese").eval()
    with torch.no_grad():  # move the embedding layer off the identity so it has to be applied
        model.embedding.linear.weight.add_(0.1 * torch.randn(32, 32, generator=torch.Generator().manual_seed(1)))
        model.embedding.linear.bias.fill_(0.05)
        batch, pairs = side_by_side_batch(3, encoder.config.vocab_size)
        rows = pad([a for a, _ in pairs] + [b for _, b in pairs])
        hidden = encoder(rows["input_ids"], rows["attention_mask"]).last_hidden_state
        mask = rows["attention_mask"].unsqueeze(-1).float()
        pooled = (hidden * mask).sum(1) / mask.sum(1)
        e = pooled @ model.embedding.linear.weight.T + model.embedding.linear.bias
        u, v = e[:3], e[3:]
        expected = 5 * (u * v).sum(-1) / (u.norm(dim=-1) * v.norm(dim=-1))
        prediction = model("sts", batch)
        torch.testing.assert_close(prediction.logit, expected)
        torch.testing.assert_close(prediction.embeddings, torch.stack([u, v], dim=1))  # what AnglE reads
    assert STS_SCALE == 5


def test_sentence_embedding_starts_as_mean_pooling() -> None:
    layer = SentenceEmbedding(6)
    assert torch.equal(layer.linear.weight, torch.eye(6)) and not layer.linear.bias.any()
    hidden = torch.randn(3, 4, 6, generator=torch.Generator().manual_seed(0))
    lengths = [4, 2, 1]
    mask = torch.tensor([[1] * n + [0] * (4 - n) for n in lengths])
    by_hand = torch.stack([hidden[row, :n].mean(0) for row, n in enumerate(lengths)])
    with torch.no_grad():
        torch.testing.assert_close(layer(hidden, mask), by_hand)
        torch.testing.assert_close(mean_pool(hidden, mask), by_hand)


def test_token_alignment_features_by_hand() -> None:
    """a = [CLS] x1 x2 [SEP], b = [CLS] y1 [SEP], then padding. x1 = y1 and x2 is orthogonal to
    both: a's tokens find matches of cosine 1 and 0 (mean 0.5, worst 0), b's token finds 1 (mean
    1, worst 1). The special tokens share one vector, so counting them would match them at 1."""
    special, x1, x2, pad_state = [-1.0, -1.0], [1.0, 0.0], [0.0, 1.0], [5.0, 5.0]
    hidden = torch.tensor([[special, x1, x2, special, special, x1, special, pad_state]])
    sequence_ids = torch.tensor([[1, 1, 1, 1, 2, 2, 2, 0]])
    features = token_alignment(hidden, sequence_ids)
    torch.testing.assert_close(features, torch.tensor([[(0.5 + 1.0) / 2, 0.5, 0.0, 1.0]]))
    swapped = torch.tensor([[special, x1, special, special, x1, x2, special, pad_state]])
    torch.testing.assert_close(token_alignment(swapped, torch.tensor([[1, 1, 1, 2, 2, 2, 2, 0]])), features)


def test_token_alignment_widens_only_the_siamese_paraphrase_head(encoder: BertModel) -> None:
    width, rows = encoder.config.hidden_size, 3
    siamese = MultitaskBert(encoder, STUDY, pairs="siamese", token_alignment=True).eval()
    assert siamese.heads["quora"].in_features == 3 * width + 4 and siamese.heads["sst"].in_features == 2 * width
    cross = MultitaskBert(encoder, STUDY, pairs="cross", token_alignment=True)
    assert cross.heads["quora"].in_features == width  # a cross-encoded pair's tokens already meet
    batch = side_by_side_batch(rows, encoder.config.vocab_size)[0]
    with torch.no_grad():
        paraphrase = siamese("quora", batch)
        assert paraphrase.logit.shape == (rows,)
        # the head reads the scaled features: its last four weights alone move the logit by exactly that
        siamese.heads["quora"].weight[0, -4:] += 1.0
        expected = paraphrase.logit + ALIGNMENT_SCALE * token_alignment(
            encoder(**{k: batch[k] for k in ("input_ids", "attention_mask", "sequence_ids")}).last_hidden_state,
            batch["sequence_ids"],
        ).sum(-1)
        torch.testing.assert_close(siamese("quora", batch).logit, expected)
