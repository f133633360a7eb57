"""Simulated annotators: real Label Studio users whose rankings come from a gold scorer plus noise.

The protocol of Gao et al. 2022: a fixed gold scorer labels comparisons, a
proxy reward model learns from those labels, the policy is optimised against
the proxy, and the gold score tells the truth. Each annotator is a real
account (invite/signup) that fetches tasks and submits rankings through the
API exactly as the UI would. Orders are sampled Plackett-Luce style: gold
score plus Gumbel noise scaled by the annotator's temperature (gold units),
so two annotators agree on a pair about as often as people do when the
temperature is tuned (measured: ~0.26 for VADER on SmolLM2's answers gives
InstructGPT's ~73% agreement).

Where the project shows the reward model's pre-ranking, an annotator opens
each task as the UI does (Label Studio then asks the backend for it) and
starts from it; with probability `anchoring` it submits the pre-ranking as
shown, as a hurried person does. That is the anchoring the loop defends against.
"""

from __future__ import annotations

import json
import math
import random
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from labelstudio_backend.annotators import create_annotator
from labelstudio_backend.project_setup import sdk_field
from labelstudio_backend.results import task_candidates
from labelstudio_backend.templates import ranking_result, template_of
from services.core.errors import InvalidRequestError
from services.core.rankings import GoldScorer


def noisy_order(gold: Sequence[float], temperature: float, rng: random.Random) -> list[int]:
    """Candidate indices best-first: gold + temperature * Gumbel noise (Plackett-Luce sampling)."""
    noisy = [g - temperature * math.log(-math.log(rng.random() or 1e-12)) for g in gold]
    return sorted(range(len(gold)), key=lambda i: -noisy[i])


def expected_agreement(gold_groups: Sequence[Sequence[float]], temperature: float) -> float:
    """Chance that two annotators order a pair alike, over all candidate pairs of all tasks.

    With Gumbel noise of scale T, an annotator orders a pair with gold gap d
    as the gold does with probability p = sigmoid(d / T) (the difference of two
    Gumbels is logistic); two independent annotators agree with p^2 + (1-p)^2.
    """
    agreements = []
    for gold in gold_groups:
        for i in range(len(gold)):
            for j in range(i + 1, len(gold)):
                gap = abs(gold[i] - gold[j]) / max(temperature, 1e-9)
                p = 1.0 / (1.0 + math.exp(-min(gap, 700.0)))
                agreements.append(p * p + (1 - p) * (1 - p))
    return sum(agreements) / len(agreements) if agreements else 1.0


def calibrate_temperature(gold_groups: Sequence[Sequence[float]], target: float = 0.73) -> float:
    """The noise temperature that gives `target` inter-annotator agreement on these candidates.

    Re-run every iteration: as the policy improves its candidates grow alike,
    and the same agreement then needs less noise (measured: 0.26 -> 0.09 after one round of GRPO).
    """
    if not 0.5 < target < 1.0:
        raise InvalidRequestError(f"target agreement must be in (0.5, 1), got {target}")
    low, high = 1e-6, 100.0  # agreement falls as the temperature rises
    for _ in range(100):
        middle = math.sqrt(low * high)
        if expected_agreement(gold_groups, middle) > target:
            low = middle
        else:
            high = middle
    return math.sqrt(low * high)


@dataclass
class SimulatedAnnotator:
    client: object  # a LabelStudio SDK client holding this user's own token
    user_id: int
    temperature: float
    rng: random.Random = field(default_factory=random.Random)
    anchoring: float = 0.0  # chance of submitting a shown pre-ranking unchanged
    clock: random.Random = field(default_factory=random.Random)  # lead times, apart from the orders' stream

    def annotate(self, project_id: int, gold: GoldScorer, limit: int | None = None) -> list[int]:
        """Rank every task of the project with candidates that this user has not annotated yet."""
        project = self.client.projects.get(id=project_id)
        template = template_of(project.label_config)
        shows_predictions = bool(project.show_collab_predictions)
        done: list[int] = []
        for task in self.client.tasks.list(project=project_id, fields="all"):
            if limit is not None and len(done) >= limit:
                break
            annotations = task.annotations or []
            if any(_completed_by(a) == self.user_id for a in annotations):
                continue
            data = task.data or {}
            try:
                ids, bodies = task_candidates(data)
            except InvalidRequestError:
                continue  # no candidates yet
            order = noisy_order([gold(data.get("prompt", ""), b) for b in bodies], self.temperature, self.rng)
            result = ranking_result(template, ids, order)
            # Log-normal, a median of 15 s plus 5 s a candidate: some read quickly, some slowly.
            extra: dict = {"lead_time": round((15 + 5 * len(ids)) * math.exp(self.clock.gauss(0.0, 0.4)), 1)}
            shown = self._shown_prediction(task.id) if shows_predictions else None
            if shown is not None:
                extra["parent_prediction"] = shown.id
                if self.rng.random() < self.anchoring:
                    result = [{**region, "origin": "prediction"} for region in shown.result]
            annotation = self.client.annotations.create(id=task.id, result=result, **extra)
            done.append(annotation.id)
        return done

    def _shown_prediction(self, task_id: int):
        """Open the task as the UI does (Label Studio fetches the backend's pre-ranking then); the one shown."""
        self.client.tasks.get(id=str(task_id))
        predictions = [p for p in self.client.predictions.list(task=task_id) if p.result]
        return max(predictions, key=lambda p: p.id) if predictions else None


def _completed_by(annotation) -> int | None:
    value = sdk_field(annotation, "completed_by")
    return value.get("id") if isinstance(value, dict) else value


def project_gold_groups(client, project_id: int, gold: GoldScorer) -> list[list[float]]:
    """Gold scores of the candidates of every task of the project that has candidates."""
    groups = []
    for task in client.tasks.list(project=project_id, fields="all"):
        data = task.data or {}
        try:
            _, bodies = task_candidates(data)
        except InvalidRequestError:
            continue
        groups.append([gold(data.get("prompt", ""), body) for body in bodies])
    return groups


def simulated_annotators(
    base_url: str,
    admin_token: str,
    accounts_file: Path,
    count: int,
    temperature: float,
    seed: int = 0,
    anchoring: float = 0.0,
) -> list[SimulatedAnnotator]:
    """`count` annotators, signed up once (their tokens kept in `accounts_file`, mode 600) and reused after."""
    from label_studio_sdk import LabelStudio

    path = Path(accounts_file)
    path.parent.mkdir(parents=True, exist_ok=True)  # a controller whose Label Studio runs elsewhere has no data dir
    accounts = json.loads(path.read_text()) if path.is_file() else {}
    for i in range(count):
        if not isinstance(accounts.get(str(i)), dict):
            # A fresh address each time: a signup cut off by a crash may have made the user without
            # giving us the token, and that address could not be signed up again.
            email = f"simulated-annotator-{i}-{secrets.token_hex(3)}@rlhf-loop.local"
            token = create_annotator(base_url, admin_token, email, f"sim-{seed}-{i}-{secrets.token_hex(8)}")
            accounts[str(i)] = {"email": email, "token": token}
            path.write_text(json.dumps(accounts))
            path.chmod(0o600)
    annotators = []
    for i in range(count):
        client = LabelStudio(base_url=base_url, api_key=accounts[str(i)]["token"])
        user_id = client.users.whoami().id
        rng, clock = random.Random(seed * 1000 + i), random.Random(f"clock-{seed}-{i}")
        annotators.append(SimulatedAnnotator(client, user_id, temperature, rng, anchoring, clock))
    return annotators
