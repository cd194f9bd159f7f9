"""Framework-free parts of retrieval: ITC top-k selection and ranked results."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class RankResult:
    """One query's ranking: ``indices`` into the collection, best first (by ITM when re-ranked)."""

    indices: np.ndarray  # (k,) int
    itc_scores: np.ndarray  # (k,) cosine similarity in the ITC space
    itm_scores: np.ndarray | None  # (k,) ITM match probability, None without re-ranking

    def as_list(self) -> list[dict]:
        out = []
        for j, idx in enumerate(self.indices.tolist()):
            row = {"index": idx, "itc": float(self.itc_scores[j])}
            if self.itm_scores is not None:
                row["itm"] = float(self.itm_scores[j])
            out.append(row)
        return out


def itc_top_k(query: np.ndarray, collection: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and cosine scores of the ``k`` nearest (normalised) embeddings, best first.

    ``query`` ``(D,)``, ``collection`` ``(N, D)``; ties keep the lower index first.
    """
    if collection.ndim != 2 or query.shape[-1] != collection.shape[1]:
        raise ValueError(
            f"query of shape {query.shape} and collection of shape {collection.shape} do not match"
        )
    sims = collection @ query.reshape(-1)
    k = min(k, len(sims))
    order = np.lexsort((np.arange(len(sims)), -sims))[:k]
    return order, sims[order]


def rerank(indices: np.ndarray, itc: np.ndarray, itm: np.ndarray) -> RankResult:
    """Order the ITC shortlist by ITM probability (ties: ITC order)."""
    order = np.lexsort((np.arange(len(itm)), -itm))
    return RankResult(indices=indices[order], itc_scores=itc[order], itm_scores=itm[order])
