"""Gold scorers that tests configure on the policy service (`--gold-scorer tests.gold_scorers:length`)."""


def length(prompt: str, response: str) -> float:
    return float(len(response))
