"""`rlhf-loop demo`: train and serve a reward model on the built-in preference set, offline.

Until the iteration controller lands this is the main job in miniature: the
real reward service starts as a process, scores examples with its untrained
base version, trains a version from rankings over gRPC (progress streamed),
promotes it, and scores the same examples again.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from services.reward.builtin_preferences import synthetic_rankings
from services.reward.client import RewardClient
from services.service_process import ServiceProcess

EXAMPLES = [
    (
        "How do I make bread?",
        "Happy to help! Mix flour, water, yeast and salt, knead, let it rise, then bake.",
    ),
    ("How do I make bread?", "Figure it out yourself. Mix flour and water."),
    (
        "What is the water cycle?",
        "Great question. Water evaporates, condenses into clouds and falls as rain.",
    ),
    ("What is the water cycle?", "That is a stupid question. Rain falls."),
]


def _say(message: str) -> None:
    print(message, flush=True)


def _show_scores(client: RewardClient) -> None:
    scores, version = client.score(EXAMPLES)
    _say(f"  scores from {version}:")
    for (prompt, response), score in zip(EXAMPLES, scores, strict=True):
        _say(f"    {score:+7.3f}  {prompt} -> {response[:60]}")


def run_demo(model: str = "minilm", workdir: Path | None = None) -> int:
    with tempfile.TemporaryDirectory(prefix="rlhf-demo-") as tmp:
        root = Path(workdir or tmp)
        root.mkdir(parents=True, exist_ok=True)
        _say(f"starting the reward service ({model}) with its registry in {root / 'reward-registry'}")
        service = ServiceProcess(
            "reward", ["--registry", str(root / "reward-registry"), "--model", model], root / "reward.log"
        )
        try:
            service.wait_ready()
            with RewardClient(service.target, timeout_s=120) as client:
                _say(f"reward service up: gRPC {service.target}, metrics {service.http}/metrics")
                _show_scores(client)
                rankings = synthetic_rankings(40, 4)
                _say(f"training on {len(rankings)} built-in rankings (4 candidates each, friendly > hostile)")
                accuracy, version = float("nan"), ""
                for event in client.train(rankings, epochs=4, learning_rate=2e-4, batch_size=16, promote=True):
                    kind = event.WhichOneof("event")
                    if kind == "progress" and (event.progress.step % 5 == 0 or event.progress.step == 1):
                        p = event.progress
                        _say(f"  step {p.step}/{p.total_steps}  loss {p.loss:.3f}  accuracy {p.accuracy:.2f}")
                    elif kind == "evaluation":
                        accuracy = event.evaluation.heldout_accuracy
                        _say(
                            f"  held-out accuracy {accuracy:.3f} on {event.evaluation.heldout_pairs} pairs "
                            f"from {event.evaluation.heldout_prompts} unseen prompts"
                        )
                    elif kind == "version":
                        version = event.version.id
                        _say(f"  new version {version} (active: {event.version.active})")
                _show_scores(client)
                ranked = client.rank(EXAMPLES[0][0], [EXAMPLES[1][1], EXAMPLES[0][1]])
                _say(f"  P(friendly answer beats hostile one) = {ranked.probabilities[1][0]:.3f}")
        finally:
            service.stop()
    ok = accuracy >= 0.6
    _say(f"demo {'finished' if ok else 'FAILED: the reward model did not learn the rule'} ({version})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(run_demo())
