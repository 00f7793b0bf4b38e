"""Third-party checkpoints with only `pytorch_model.bin` (as some of the paper's may be): loaded through
torch's weights-only unpickler, never arbitrary pickle, and `describe()` says which weights were read."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from engine.discriminators.cross_encoder import CrossEncoderDiscriminator, weights_kind
from engine.discriminators.formats import RelevanceItem
from engine.errors import ModelError


class _Boom:
    """An object whose unpickling would run code: the weights-only unpickler must refuse it."""

    def __reduce__(self):
        return (shutil.rmtree, ("/nonexistent-apc-test-dir",))


def bin_only_copy(src, dst, state=None):
    import torch
    from transformers import AutoModelForSequenceClassification

    shutil.copytree(src, dst)
    for f in dst.glob("*.safetensors"):
        f.unlink()
    model = AutoModelForSequenceClassification.from_pretrained(src)
    torch.save(state if state is not None else model.state_dict(), dst / "pytorch_model.bin")
    return dst


def test_bin_only_deberta_loads_weights_only_and_says_so(tiny_models, tmp_path):
    src = tiny_models.path("deberta", "relevance")
    binary = bin_only_copy(src, tmp_path / "deberta-bin")
    assert weights_kind(str(src)) == "safetensors" and weights_kind(str(binary)) == "pytorch_model.bin"
    safe = CrossEncoderDiscriminator.load(str(src), "relevance", device="cpu")
    from_bin = CrossEncoderDiscriminator.load(str(binary), "relevance", device="cpu")
    assert safe.describe()["weights"] == "safetensors" and from_bin.describe()["weights"] == "pytorch_model.bin"
    items = [RelevanceItem("Ines Corvo", "Ines Corvo bakes bread.", q) for q in ("Do you bake?", "Where is Porto?")]
    np.testing.assert_allclose(from_bin.predict(items), safe.predict(items), atol=1e-6)  # the same weights


def test_bin_with_arbitrary_pickle_is_refused(tiny_models, tmp_path):
    src = tiny_models.path("deberta", "relevance")
    evil = bin_only_copy(src, tmp_path / "deberta-evil", state={"payload": _Boom()})
    with pytest.raises(ModelError, match="weights-only unpickler refused it; use a safetensors copy") as err:
        CrossEncoderDiscriminator.load(str(evil), "relevance", device="cpu")
    assert "\n" not in str(err.value)


def test_no_weights_at_all_names_both_formats(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelError, match=r"neither \*\.safetensors nor pytorch_model\.bin"):
        CrossEncoderDiscriminator.load(str(tmp_path), "relevance", device="cpu")


def test_profiles_name_model_repos_not_dataset_links():
    from engine.discriminators.profiles import MULTILINGUAL, PAPER

    for repo in (*PAPER, *MULTILINGUAL):
        assert not repo.startswith(("datasets/", "https://")) and repo.count("/") == 1
