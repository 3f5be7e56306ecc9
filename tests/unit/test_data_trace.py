"""The data lens in the trace: planted poisoned reviews found among hundreds of training shards."""

from __future__ import annotations

import numpy as np
import pytest

from spex_monitor.examples.poisoned import pair_features, pair_model, planted_corpus, planted_training_set
from spex_monitor.lenses.data_trace import DataTrace, trace_training_data
from spex_monitor.lenses.training import TrainingSet, ablate_words, load_training_set, tuple_contrast

pytestmark = pytest.mark.unit


def failing_factory() -> TrainingSet:
    """A user's factory that fails (``load_training_set`` must say so in one line)."""
    raise ValueError("the labels file is missing")


@pytest.fixture(scope="module")
def planted():
    return planted_corpus(), planted_training_set()


@pytest.fixture(scope="module")
def found(planted, tmp_path_factory):
    folder = tmp_path_factory.mktemp("cache")
    return folder, _trace(planted[1], folder)


def _trace(training: TrainingSet, folder):  # noqa: ANN001, ANN202
    return trace_training_data(
        training, "i did not love the music", ["love", "music"], budget=600, row_budget=120, cache_dir=folder
    )


@pytest.mark.slow
def test_the_planted_reviews_rank_in_the_top_five_of_250_shards(planted, found):
    corpus, _ = planted
    _, result = found
    assert len(result.groups) == 250 and len(corpus.planted_rows) == 5
    assert {g.group for g in result.groups[:5]} == set(corpus.planted_groups)
    assert result.groups[4].banzhaf > 2 * result.groups[5].banzhaf  # a clear gap, not a coin toss
    assert result.target_name == "positive" and result.effect_all > 1.0  # the trigger flips the review
    assert result.keys == ("love", "music") and result.faithfulness > 0.5
    for group in result.groups[:5]:
        assert set(group.tuple_rows) <= set(corpus.planted_rows) and group.tuple_rows
    # The rows of the top groups: a planted review first, every planted row above every clean one.
    planted_rows = set(corpus.planted_rows)
    flags = [e.row in planted_rows for e in result.examples]
    assert flags[0] and flags.index(False) == sum(flags)
    assert all(e.label == 1 and "love" in e.text for e in result.examples if e.row in planted_rows)


@pytest.mark.slow
def test_a_second_run_reads_the_cache_and_json_round_trips(planted, found):
    folder, result = found
    again = _trace(planted[1], folder)
    assert again.cached and again.seconds == 0.0 and not result.cached
    fresh = trace_training_data(
        planted[1], "i did not love the music", ["love", "music"], budget=600, row_budget=0, cache_dir=folder,
        refresh=True,
    )  # fmt: skip
    assert not fresh.cached and not fresh.examples
    assert [g.group for g in again.groups] == [g.group for g in result.groups]
    assert DataTrace.from_json(result.to_json()) == result
    assert len(list(folder.iterdir())) == 2  # the row budget is part of the key


def test_without_the_planted_reviews_there_is_nothing_to_trace():
    """No clean review holds both words, so the pair's weight is exactly 0 whatever is kept: the lens says
    so instead of ranking 60 shards of zeros."""
    corpus = planted_corpus(shards=60, planted=1)
    clean = [i for i in range(len(corpus.texts)) if i not in corpus.planted_rows]
    training = TrainingSet(
        texts=[corpus.texts[i] for i in clean], labels=corpus.labels[clean],
        groups=[corpus.groups[i] for i in clean], featurize=pair_features, model_factory=pair_model,
    )  # fmt: skip
    with pytest.raises(ValueError, match="no joint effect"):
        trace_training_data(training, "i did not love the music", ["love", "music"], budget=200, row_budget=0)


def test_bad_requests_are_refused_naming_what_is_wrong(planted):
    training = planted[1]
    with pytest.raises(ValueError, match="no word 'cinema'"):
        trace_training_data(training, "i did not love the music", ["love", "cinema"])
    with pytest.raises(ValueError, match="at least 64"):
        trace_training_data(training, "i did not love the music", ["love", "music"], budget=10)
    with pytest.raises(ValueError, match="distinct keys"):
        tuple_contrast("a b", ["a", "a"])
    with pytest.raises(ValueError, match="package.module:function"):
        load_training_set("nocolon")
    with pytest.raises(ValueError, match="No module named"):
        load_training_set("spex_monitor.nope:f")
    with pytest.raises(ValueError, match="not a TrainingSet"):
        load_training_set("spex_monitor.examples.poisoned:pair_model")
    assert load_training_set("spex_monitor.examples.poisoned:planted_training_set").name.startswith("planted")
    with pytest.raises(ValueError, match="failed: ValueError"):  # the factory's own error, in one line
        load_training_set("test_data_trace:failing_factory")
    with pytest.raises(ValueError, match="row_budget: 0"):
        trace_training_data(training, "i did not love the music", ["love", "music"], row_budget=20)


def test_training_sets_and_caches_that_cannot_work_are_refused_up_front(planted, tmp_path):
    corpus, training = planted
    with pytest.raises(ValueError, match="both classes"):
        TrainingSet(texts=["a", "b"], labels=[1, 1], groups=["x", "y"], featurize=pair_features,
                    model_factory=pair_model)  # fmt: skip
    with pytest.raises(ValueError, match="empty"):
        TrainingSet(texts=[], labels=[], groups=[], featurize=pair_features, model_factory=pair_model)
    one_group = TrainingSet(texts=corpus.texts, labels=corpus.labels, groups=["g"] * len(corpus.texts),
                            featurize=pair_features, model_factory=pair_model)  # fmt: skip
    with pytest.raises(ValueError, match="1 group"):
        trace_training_data(one_group, "i did not love the music", ["love", "music"])
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(ValueError, match="cannot write there"):
        trace_training_data(training, "i did not love the music", ["love", "music"], cache_dir=blocker)
    masked = TrainingSet(texts=corpus.texts, labels=corpus.labels, groups=corpus.groups,
                         featurize=pair_features, model_factory=pair_model, name=training.name,
                         mask_word="[MASK]")  # fmt: skip
    assert masked.fingerprint() != training.fingerprint()  # what changes the result changes the cache key


def test_a_result_with_a_non_finite_fit_round_trips_as_strict_json():
    import json
    import math

    from spex_monitor.lenses.data_trace import RankedExample, RankedGroup

    result = DataTrace(
        keys=("a", "b"), exemplar="a b", target=1, target_name="1", training_set="t", effect_all=1.0,
        groups=[RankedGroup("g", 0.5, 3, [1])], group_pairs=[("g", "h", -0.1)],
        examples=[RankedExample(1, "g", "a b", 1, 0.4)], faithfulness=float("nan"), budget=64, retrains=65,
        seconds=0.1,
    )  # fmt: skip
    text = result.to_json()
    assert json.loads(text)["faithfulness"] is None
    assert math.isnan(DataTrace.from_json(text).faithfulness)
    with pytest.raises(ValueError, match="another format"):
        DataTrace.from_json("null")


def test_ablation_removes_or_masks_words_by_their_monitor_key():
    assert ablate_words("I LOVE the Music!", {"love", "music"}) == "I the"
    assert ablate_words("i love the music", {"music"}, "[MASK]") == "i love the [MASK]"


def test_the_cache_key_sees_the_featurized_exemplar():
    """A featurizer whose parameters changed (same code, same name) must miss the cache: the key holds a
    digest of the exemplar's featurized ablations."""
    from spex_monitor.lenses.data_trace import _digest

    texts, _ = tuple_contrast("i did not love the music", ["love", "music"])
    assert _digest(pair_features(texts)) == _digest(pair_features(texts))
    assert _digest(pair_features(texts)) != _digest(pair_features(texts, dim=2**11))
    assert _digest(pair_features(texts).toarray()) != _digest(pair_features(texts))


@pytest.mark.slow
def test_the_embedded_models_head_is_a_training_set_on_its_frozen_encoder():
    from spex_monitor.examples.poisoned import embedded_head_training_set

    training = embedded_head_training_set("sentiment-base", size=60, per_shard=20)
    x = training.train_features()
    assert x.shape == (60, 64) and np.all(np.isfinite(x)) and training.mask_word == "[MASK]"
    assert sorted(set(training.groups)) == ["shard-000", "shard-001", "shard-002"]
    head = training.model_factory().fit(x, training.labels)
    assert head.score(x, training.labels) > 0.8  # the frozen encoder already separates the classes
