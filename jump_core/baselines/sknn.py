"""SKNN (Jannach & Ludewig, RecSys 2017) and V-SKNN (Ludewig & Jannach, UMUAI 2018): session-based kNN.

SKNN, "When recurrent neural networks meet the neighborhood for session-based recommendation"
(Jannach & Ludewig, RecSys 2017); V-SKNN, "Evaluation of session-based recommendation algorithms"
(Ludewig & Jannach, UMUAI 2018). Both follow session-rec (rn5l/session-rec, algorithms/knn/sknn.py
ContextKNN and vsknn.py VMContextKNN), evaluated prefix by prefix: row j of a test session ranks
the next click from its clicks 1..j only. Click-only models: dwell = None, protocol ignored.

Common to both (as in session-rec unless said otherwise):
  * fit keeps, per training session, its SET of items (item 0 = unknown is dropped) and its
    recency = the timestamp of its last click. Ties in that timestamp are broken by the later
    position in the training file (session-rec sorts a python set: arbitrary order).
  * Candidates of a prefix = training sessions sharing at least one item with it, restricted to
    the `sample_size` most recent of them (sampling='recent'; sample_size=0: all of them).
  * Among the candidates with similarity > 0 the k most similar are the neighbours; ties at the
    k-th place go to the more recent session (session-rec: arbitrary order of a python set).
    Similarities are computed so that values equal as real numbers are equal floats (integer
    numerators, one rounded division), so ties are real ties, the same in any batch.
  * score(i) = sum over neighbours n containing i of w_n. Items of the prefix itself are scored
    too (session-rec: sknn has no reminder filter; vsknn default remind=True). Items no neighbour
    contains score 0 < every scored item, so they tie at the bottom (evaluation ranks ties
    pessimistically; V-SKNN with weighting_score='linear' adds 0 from step 10 on). session-rec's
    final `normalize` (divide by the row max) is omitted: it does not change a ranking. Column 0 (unknown item) is -inf.
  * An unknown item (0) in the prefix matches no training session but keeps its place in the
    click sequence (V-SKNN positions and steps count it); it is left out of the prefix item set.

SKNN ("sknn"): w_n = cosine of the binary item sets, |P & N| / sqrt(|P| |N|), P = distinct items of
  the prefix (repeated clicks count once). session-rec's cosine() computes li / sqrt(la) * sqrt(lb)
  (operator precedence bug: it multiplies by sqrt|N|); we implement the cosine the paper defines.

V-SKNN ("vsknn"), defaults = VMContextKNN's constructor (weighting='div', weighting_score='div',
  idf_weighting=False; remind=True, no dwelling_time / weighting_time / last_n_clicks / reminders),
  with k=100, sample_size=500 (session-rec's default is 1000). The tuned session-rec configs differ
  per dataset: rsc15 (conf/save/rsc15/window/window_rsc15_baselines.yml) k=100, sample_size=1000,
  weighting='quadratic', weighting_score='quadratic'; diginetica (window_digi_baselines.yml) k=500,
  weighting='quadratic', weighting_score='div', idf_weighting=5 (its sample size is given as
  `sampling_size: 5000`, a misspelt key) -- all reachable through the constructor args.
  * Prefix vector: the click at position t (1-based) of a prefix of j clicks weighs
    weighting(t, j): same 1, div t/j, quadratic (t/j)^2, log 1/log10(j - t + 1.7). A repeated item
    keeps the weight of its LAST click (session-rec overwrites pos_map). 'linear' is not offered:
    session-rec's `1 - 0.1 (j - t) if t <= 10 else 0` gives zero or negative weights past 10 clicks.
  * sim(P, N) = sum over items i in P & N of weight(i) / |P| (|P| distinct items, session-rec's
    vec(); the 1/|P| is a per-prefix constant and changes no ranking).
  * w_n = sim * weighting_score(step), step = j - t + 1 where t is the last prefix position whose
    item N contains (1 = the last click): same 1, div 1/step, quadratic 1/step^2,
    log 1/log10(step + 1.7), linear max(0, 1 - 0.1 step) (session-rec: 1 - 0.1 step for
    step <= 100, which goes negative past step 10; we clamp at 0).
  * idf_weighting = lam > 0: the contribution to item i is multiplied by (1 + lam idf(i)),
    idf(i) = log(#training sessions / #training clicks on i) (session-rec counts clicks); idf is
    clamped at 0 (not in session-rec) so a scored item never drops below an unscored one.

Vectorised per batch: the prefixes of a batch (in chunks of `chunk` = 1024 rows, to bound memory
on batches of long sessions; rows are independent) form one sparse (P, n_items) matrix; one sparse
product with the (n_items, S) session matrix gives every candidate's similarity; the recency
sample and the top-k (np.partition threshold + a recency-ordered tie count) are exact per-row
selections on its entries (training sessions are stored most recent first, so a row's entries in
column order are in recency order); one more sparse product (P, S) @ (S, n_items) gives the scores
(float32). Scoring ~19k prefixes against ~19k training sessions takes ~5 s on one core.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from ..contract import FittedModel, Prediction, SessionBatch, check_protocol
from ..data.dataset import SessionSet, _ranges

POSITION_WEIGHTS = {  # weighting(t, j) = numerator(t, j) / denominator(j), t = 1..j (1-based)
    "same": (lambda t, j: np.ones_like(t), lambda j: np.ones_like(j)),
    "div": (lambda t, j: t, lambda j: j),
    "quadratic": (lambda t, j: t**2, lambda j: j**2),
    "log": (lambda t, j: 1.0 / np.log10(j - t + 1.7), lambda j: np.ones_like(j)),
}
STEP_WEIGHTS = {  # weighting_score(step), step = 1, 2, ...
    "same": lambda s: np.ones_like(s, dtype=np.float64),
    "div": lambda s: 1.0 / s,
    "linear": lambda s: np.maximum(0.0, 1.0 - 0.1 * s),
    "quadratic": lambda s: 1.0 / s**2,
    "log": lambda s: 1.0 / np.log10(s + 1.7),
}


@dataclass
class SessionKNNConfig:
    n_items: int  # catalogue size including index 0
    k: int = 100  # neighbours
    sample_size: int = 500  # most recent candidate sessions sharing an item (0: all); session-rec: 1000


@dataclass
class VSKNNConfig(SessionKNNConfig):
    weighting: str = "div"  # prefix position weight, POSITION_WEIGHTS
    weighting_score: str = "div"  # neighbour weight by the step of the last shared item, STEP_WEIGHTS
    idf_weighting: float = 0.0  # lam of (1 + lam idf(i)); 0: off

    def __post_init__(self):
        if self.weighting not in POSITION_WEIGHTS:
            raise ValueError(f"weighting must be one of {sorted(POSITION_WEIGHTS)}, not {self.weighting!r}")
        if self.weighting_score not in STEP_WEIGHTS:
            raise ValueError(f"weighting_score must be one of {sorted(STEP_WEIGHTS)}, not {self.weighting_score!r}")


class SessionKNN(FittedModel):
    """SKNN: neighbours = k most cosine-similar of the sample_size most recent sessions sharing an item."""

    name = "sknn"
    ranks_clicks, predicts_dwell = True, False

    chunk = 1024  # prefixes scored together (bounds the (chunk, S) candidate matrix)

    def __init__(self, config: SessionKNNConfig):
        self.config = config

    # ---- training: the binary session x item matrix, most recent session first ----
    def fit(self, train: SessionSet) -> SessionKNN:
        S, lengths = len(train), train.lengths
        last_ts = train.ts[np.maximum(train.offsets[1:] - 1, 0)]  # (S,)
        order = np.lexsort((-np.arange(S), -last_ts))  # most recent first
        recency = np.empty(S, dtype=np.int64)
        recency[order] = np.arange(S)  # (S,) row of each session
        rows = np.repeat(recency, lengths)  # (N,)
        known = train.items > 0
        X = sp.csr_matrix(
            (np.ones(int(known.sum())), (rows[known], train.items[known])), shape=(S, self.config.n_items)
        )  # (S, n) duplicates summed
        X.data[:] = 1.0  # item sets
        X.sort_indices()
        self.X = X  # (S, n)
        self.X32 = X.astype(np.float32)  # (S, n)
        self.XT = X.T.tocsr()  # (n, S)
        self.XT.sort_indices()
        self.session_size = np.diff(X.indptr).astype(np.float64)  # (S,) |N|
        clicks = np.bincount(train.items, minlength=self.config.n_items).astype(np.float64)  # (n,)
        self.idf = np.log(max(S, 1) / np.maximum(clicks, 1.0)).clip(min=0.0)  # (n,)
        return self

    # ---- the prefixes of a batch ----
    def _prefixes(self, batch: SessionBatch):
        """Every prefix 1..j of every next position, one (prefix, item) entry per distinct known item.

        Returns P, j (P,) 0-based last position of each prefix, and the entries sorted by
        (prefix, item): row (E,), item (E,), t (E,) 0-based position of the item's last click.
        """
        items = batch.items.cpu().numpy()  # (B, L)
        b_idx, j_idx = np.nonzero(batch.next_positions().cpu().numpy())  # (P,), (P,) mask order
        P = len(b_idx)
        row = np.repeat(np.arange(P), j_idx + 1)  # (E0,)
        t = _ranges(np.zeros(P, dtype=np.int64), j_idx + 1)  # (E0,) 0..j per prefix
        item = items[b_idx[row], t]  # (E0,)
        known = item > 0
        row, t, item = row[known], t[known], item[known]
        key = row * self.config.n_items + item  # (E0,)
        srt = np.lexsort((t, key))  # by key, then position
        key, row, t, item = key[srt], row[srt], t[srt], item[srt]
        last = np.append(key[1:] != key[:-1], True) if len(key) else np.zeros(0, bool)  # last click of an item
        return P, j_idx, row[last], item[last], t[last]

    def _prefix_weights(self, row, t, j):
        """(E,) weight of each prefix entry (binary for SKNN); (P,) a per-prefix denominator."""
        return np.ones(len(row)), np.ones(len(j))

    def _similarity(self, dot, la, lb):
        """Candidate similarity from dot (C,) = |P & N| and the sizes |P|, |N| (C,): the cosine.

        sqrt(ov^2 / (|P| |N|)): exact integers, one rounded division and sqrt, so similarities
        equal as real numbers are equal floats and ties are broken by recency only.
        """
        return np.sqrt(dot * dot / (la * lb))

    # ---- neighbours: recency sample, then top-k by similarity ----
    def _neighbours(self, M: sp.csr_matrix):
        """Exact per-row selection on M (P, S) = similarities of the candidates, sorted columns = recency order.

        Returns (row, col, sim) of the kept neighbours, sorted by row.
        """
        P = M.shape[0]
        row = np.repeat(np.arange(P), np.diff(M.indptr))  # (C,)
        pos = np.arange(len(row)) - M.indptr[row]  # (C,) recency rank in row
        keep = M.data > 0
        if self.config.sample_size > 0:
            keep &= pos < self.config.sample_size
        row, col, sim = row[keep], M.indices[keep], M.data[keep]  # (C',) row-major, recent first
        first = np.searchsorted(row, np.arange(P + 1))  # (P+1,)
        pos = np.arange(len(row)) - first[row]  # (C',)
        count = np.diff(first)  # (P,)
        k = int(self.config.k)
        big = np.flatnonzero(count > k)  # rows that need a cut
        if len(big) == 0:
            return row, col, sim
        slot = np.full(P, -1)
        slot[big] = np.arange(len(big))
        W = int(count[big].max())
        in_big = slot[row] >= 0  # (C',)
        D = np.full((len(big), W), -np.inf)  # (P', W) recency order
        D[slot[row[in_big]], pos[in_big]] = sim[in_big]
        kth = np.partition(D, W - k, axis=1)[:, W - k : W - k + 1]  # (P', 1) k-th largest
        above, tied = kth < D, kth == D  # (P', W)
        need = k - above.sum(1, keepdims=True)  # (P', 1)
        take = above | (tied & (np.cumsum(tied, axis=1, dtype=np.int32) <= need))  # (P', W) ties: recent
        keep = np.ones(len(row), dtype=bool)
        keep[in_big] = take[slot[row[in_big]], pos[in_big]]
        return row[keep], col[keep], sim[keep]

    def _neighbour_weights(self, row, col, sim, pre_row, pre_item, pre_t, j):
        return sim

    @torch.no_grad()
    def predict(self, batch: SessionBatch, protocol: str = "paper") -> Prediction:
        check_protocol(protocol)
        P, j, pre_row, pre_item, pre_t = self._prefixes(batch)
        scores = np.empty((P, self.config.n_items), dtype=np.float32)  # (P, n)
        bounds = np.searchsorted(pre_row, np.arange(0, P + self.chunk, self.chunk).clip(max=P))
        for c, (a, b) in enumerate(itertools.pairwise(bounds)):  # rows are independent:
            rows = slice(c * self.chunk, min((c + 1) * self.chunk, P))  # chunks bound memory
            scores[rows] = self._score_rows(j[rows], pre_row[a:b] - rows.start, pre_item[a:b], pre_t[a:b])
        scores[:, 0] = -np.inf
        return Prediction(torch.from_numpy(scores).to(batch.items.device), None)

    def _score_rows(self, j, pre_row, pre_item, pre_t):
        """Scores (P, n) of the prefixes with last positions j (P,) and entries pre_* (E,)."""
        P = len(j)
        w, den = self._prefix_weights(pre_row, pre_t, j)  # (E,), (P,)
        indptr = np.searchsorted(pre_row, np.arange(P + 1))  # (P+1,)
        Q = sp.csr_matrix((w, pre_item, indptr), shape=(P, self.config.n_items))  # (P, n)
        M = (Q @ self.XT).tocsr()  # (P, S) overlap / dot
        M.sort_indices()
        cand_row = np.repeat(np.arange(P), np.diff(M.indptr))  # (C,)
        la = np.diff(indptr).astype(np.float64)  # (P,) |P| distinct items
        M.data = self._similarity(M.data, (den * la)[cand_row], self.session_size[M.indices])  # (C,)
        row, col, sim = self._neighbours(M)  # (K,) each
        wn = self._neighbour_weights(row, col, sim, pre_row, pre_item, pre_t, j)  # (K,)
        N = sp.csr_matrix((wn.astype(np.float32), (row, col)), shape=(P, self.X.shape[0]))  # (P, S)
        return self._item_factor((N @ self.X32).toarray())  # (P, n)

    def _item_factor(self, scores):
        return scores


class VSKNN(SessionKNN):
    """V-SKNN: prefix vector decaying with distance from the last click, dot-product similarity."""

    name = "vsknn"

    def __init__(self, config: VSKNNConfig):
        super().__init__(config)

    def _prefix_weights(self, row, t, j):
        num, den = POSITION_WEIGHTS[self.config.weighting]
        return num(t + 1.0, j[row] + 1.0), den(j + 1.0)  # (E,), (P,)

    def _similarity(self, dot, la, lb):
        """session-rec vec(): sum of the prefix weights of the shared items / |P|.

        dot holds integer numerators (same, div, quadratic) and la = denominator * |P|: one rounded
        division, so equal similarities are equal floats (for 'log' ties hold up to rounding).
        """
        return dot / la

    def _neighbour_weights(self, row, col, sim, pre_row, pre_item, pre_t, j):
        """sim * weighting_score(step): step from the last prefix click whose item the neighbour holds."""
        if len(row) == 0:
            return sim
        counts = np.diff(self.X.indptr)[col]  # (K,) |N|
        pair = np.repeat(np.arange(len(row)), counts)  # (K*,)
        items = self.X.indices[_ranges(self.X.indptr[col], counts)]  # (K*,)
        last_click = np.full((len(j), self.config.n_items), -1, dtype=np.int32)  # (P, n) t of item in prefix
        last_click[pre_row, pre_item] = pre_t
        t_hit = last_click[row[pair], items]  # (K*,) -1: not in prefix
        t_match = np.maximum.reduceat(t_hit, np.cumsum(counts) - counts)  # (K,)
        step = (j[row] - t_match + 1).astype(np.float64)  # (K,) 1 = last click
        return sim * STEP_WEIGHTS[self.config.weighting_score](step)

    def _item_factor(self, scores):
        if self.config.idf_weighting and self.config.idf_weighting > 0:
            scores *= (1.0 + self.config.idf_weighting * self.idf).astype(np.float32)  # (P, n)
        return scores
