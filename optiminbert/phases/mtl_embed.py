"""Multitask with the shared sentence-embedding layer (SBERT-style): STS as the scaled cosine of
the two sentences' embeddings, paraphrase on [u, v, |u−v|], sentiment on [pooled, u]; PCGrad."""

from optiminbert.phases.base import JointPhase

MTL_EMBED = JointPhase(
    name="mtl_embed",
    title="MTL + sentence embeddings",
    description="multitask with the shared sentence-embedding layer",
    pairs="siamese",
    section={"surgery": "pcgrad", "contrastive": "none", "sts_loss": "cosine_similarity"},
    paper=(0.511, 0.697, 0.517),
)
