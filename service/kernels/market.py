"""The engine's market section: its top of book, features and model score, for researchers.

Every stats interval the engine copies, for each of its instruments, the best bid and ask with
the size resting there, the mid, the model's score and the feature row into its private block
(``local``) and publishes them under the market section's seqlock (layout:
``contracts.stats_layout``, ``MARKET_*``). A reader in another process
(``service.research.live``) copies the section with ``read_section`` and retries if it met the
engine mid-publish; the engine never waits for it.

The copy runs between two engine steps, so book, features and score in one publish are those
after the same message. The score is recomputed here from the features as published (a dot
product of ``N_FEATURES`` terms): what the engine would score that row at, not a value it keeps.
Only the first ``n`` records are copied and published; nothing allocates (floats are stored
through a float64 view of ``local``, as their bit patterns).
"""

from __future__ import annotations

import numpy as np

from contracts import stats_layout as L
from contracts.features import N_FEATURES
from contracts.records import ASK, BID
from service.kernels.book import book_level_qty
from service.kernels.jit import kernel
from service.kernels.seqlock import publish_section
from service.kernels.signals import model_score


@kernel
def publish_market(engine, n, shared_stats, local, now):
    """Copy the market records of instruments ``0..n-1`` of ``engine`` (an EngineState) into
    ``local`` and publish just them, with the section's header, under its seqlock."""
    book = engine.book
    features = engine.features
    model = engine.model
    floats = local.view(np.float64)  # the same words: a float stored here is its bit pattern
    local[L.MARKET_INSTRUMENTS] = n
    local[L.MARKET_FEATURE_COUNT] = N_FEATURES
    for inst in range(n):
        w = L.MARKET_RECORDS + inst * L.MARKET_RECORD_WORDS
        bid = book.best_bid[inst]
        ask = book.best_ask[inst]
        local[w + L.MARKET_BID_PX] = bid
        local[w + L.MARKET_BID_QTY] = book_level_qty(book, inst, np.int64(BID), bid)
        local[w + L.MARKET_ASK_PX] = ask
        local[w + L.MARKET_ASK_QTY] = book_level_qty(book, inst, np.int64(ASK), ask)
        floats[w + L.MARKET_MID] = features.mid[inst]
        floats[w + L.MARKET_SCORE] = model_score(
            model.weights, model.bias, model.logistic, features.values, inst
        )
        for k in range(N_FEATURES):
            floats[w + L.MARKET_FEATURE_WORDS + k] = features.values[inst, k]
    end = L.MARKET_RECORDS + n * L.MARKET_RECORD_WORDS
    publish_section(shared_stats, local, L.MARKET_SECTION, end, now)
