"""CLI command groups. Optional groups register themselves here: each module exposes `register(app)`."""

REGISTRY: list = []

from . import disc, score  # noqa: E402  (APC scoring and discriminator commands)

REGISTRY.append(score.register)
REGISTRY.append(disc.register)

from . import chat  # noqa: E402  (chat and conversations)

REGISTRY.append(chat.register)

from . import dpo, evaluate, jobs  # noqa: E402  (jobs, DPO pairs/training/exports, adapters, EU, eval, pipeline)

REGISTRY.extend([jobs.register, dpo.register, evaluate.register])

from . import synth  # noqa: E402  (teacher synthesis)

REGISTRY.append(synth.register)

from . import models  # noqa: E402  (apc models pull: checkpoints into the HF cache)

REGISTRY.append(models.register)
from . import labels  # noqa: E402  (teach the scorer: human labels, rescore)

REGISTRY.append(labels.register)
