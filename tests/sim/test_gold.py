"""The gold scorers other than sentiment order answers the way their docstrings say."""

from services.sim.gold import concise_and_complete, on_topic_detail

PROMPT = "Give me one tip about growing tomatoes."


def test_concise_and_complete_prefers_about_twenty_words_that_end_their_sentence():
    twenty = "When growing tomatoes, water the roots deeply twice a week and give each plant full sun all day long."
    cut_off = twenty[:-1] + " and then also make sure that the soil stays"
    rambling = twenty + " " + " ".join(["Also keep watering them often in the morning."] * 4)
    short = "Water tomatoes."
    assert concise_and_complete(PROMPT, twenty) > concise_and_complete(PROMPT, cut_off)
    assert concise_and_complete(PROMPT, twenty) > concise_and_complete(PROMPT, rambling)
    assert concise_and_complete(PROMPT, twenty) > concise_and_complete(PROMPT, short)
    # Warm words change nothing: this gold is not sentiment.
    assert concise_and_complete(PROMPT, "Growing tomatoes is bad.") == concise_and_complete(
        PROMPT, "Growing tomatoes is fun."
    )


def test_on_topic_detail_rewards_specific_on_topic_content_and_punishes_padding():
    specific = "Growing tomatoes: stake each vine, mulch with straw, water the roots at dawn, prune suckers weekly."
    vague = "Growing tomatoes is nice. It is good. It is nice and good."
    off_topic = "Stake each vine, mulch with straw, water the roots at dawn, prune suckers weekly."
    padded = "tomatoes " * 30
    assert on_topic_detail(PROMPT, specific) > on_topic_detail(PROMPT, vague)
    assert on_topic_detail(PROMPT, specific) > on_topic_detail(PROMPT, off_topic)
    assert on_topic_detail(PROMPT, specific) > on_topic_detail(PROMPT, padded)
