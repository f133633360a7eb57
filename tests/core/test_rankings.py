import itertools
import math

import pytest

from services.core.errors import InvalidRequestError
from services.core.rankings import (
    Ranking,
    dataset_hash,
    group_pairs_by_prompt,
    rankings_to_pairs,
    split_by_prompt,
)


def strict(prompt: str, k: int) -> Ranking:
    return Ranking(prompt, tuple(f"{prompt}-c{i}" for i in range(k)), tuple((i,) for i in range(k)))


@pytest.mark.parametrize("k", range(2, 10))
def test_a_full_order_of_k_gives_all_k_choose_2_pairs(k):
    pairs = rankings_to_pairs(strict("p", k))
    assert len(pairs) == math.comb(k, 2)
    assert {(p.chosen, p.rejected) for p in pairs} == {
        (f"p-c{i}", f"p-c{j}") for i, j in itertools.combinations(range(k), 2)
    }
    assert {p.rank_gap for p in pairs} == set(range(1, k))


def test_ties_give_no_pair_and_bucket_members_beat_lower_buckets():
    ranking = Ranking("p", ("a", "b", "c", "d"), ((0, 1), (2, 3)))
    pairs = {(p.chosen, p.rejected) for p in rankings_to_pairs(ranking)}
    assert pairs == {("a", "c"), ("a", "d"), ("b", "c"), ("b", "d")}


def test_unranked_candidates_take_part_in_no_pair():
    ranking = Ranking("p", ("a", "b", "c"), ((2,), (0,)))  # "b" left in the unsorted list
    assert [(p.chosen, p.rejected) for p in rankings_to_pairs(ranking)] == [("c", "a")]


def test_all_tied_gives_nothing():
    assert rankings_to_pairs(Ranking("p", ("a", "b", "c"), ((0, 1, 2),))) == []


@pytest.mark.parametrize("tiers", [((0,), (3,)), ((0,), (0,)), ((0, 0),)])
def test_bad_tiers_are_rejected(tiers):
    with pytest.raises(InvalidRequestError):
        rankings_to_pairs(Ranking("p", ("a", "b", "c"), tiers))


def test_pairs_are_grouped_by_prompt_across_annotators():
    groups = group_pairs_by_prompt([strict("p", 3), strict("q", 2), strict("p", 3)])
    assert list(groups) == ["p", "q"]
    assert len(groups["p"]) == 6 and len(groups["q"]) == 1


def test_split_is_by_prompt_and_deterministic():
    groups = group_pairs_by_prompt([strict(f"p{i}", 4) for i in range(20)])
    split = split_by_prompt(groups, 0.25, seed=7)
    train_prompts = {p.prompt for p in split.train}
    heldout_prompts = {p.prompt for p in split.heldout}
    assert not train_prompts & heldout_prompts
    assert (split.train_prompts, split.heldout_prompts) == (15, 5) == (len(train_prompts), len(heldout_prompts))
    assert len(split.train) + len(split.heldout) == 20 * 6
    again = split_by_prompt(groups, 0.25, seed=7)
    assert again.heldout == split.heldout
    assert split_by_prompt(groups, 0.25, seed=8).heldout != split.heldout


def test_split_keeps_one_prompt_each_side_when_it_can():
    groups = group_pairs_by_prompt([strict("a", 2), strict("b", 2)])
    split = split_by_prompt(groups, 0.01, seed=0)
    assert (split.train_prompts, split.heldout_prompts) == (1, 1)


def test_dataset_hash_ignores_order_but_not_content():
    a, b = strict("p", 3), strict("q", 3)
    assert dataset_hash([a, b]) == dataset_hash([b, a])
    assert dataset_hash([a, b]) != dataset_hash([a, Ranking("q", b.candidates, ((1,), (0,), (2,)))])


def test_kendall_distance_counts_reordered_pairs_and_ties_by_half():
    from services.core.rankings import kendall_distance

    shown = ((0,), (1,), (2,), (3,))
    assert kendall_distance(shown, shown) == 0.0
    assert kendall_distance(((3,), (2,), (1,), (0,)), shown) == 1.0
    assert kendall_distance(((1,), (0,), (2,), (3,)), shown) == 1 / 6  # one swap of six pairs
    assert kendall_distance(((0, 1), (2,), (3,)), shown) == 0.5 / 6  # a tie where the reference ordered
    assert kendall_distance(((0, 1), (2, 3)), ((0, 1), (2, 3))) == 0.0  # the same buckets: untouched
    assert kendall_distance(((2,), (0,)), shown) == 1.0  # only candidates both rank are compared
    assert kendall_distance(((0,),), shown) == 0.0
