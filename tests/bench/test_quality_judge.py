import dataclasses

import numpy as np
import torch

from benchmarks.quality_toyfaces import ATTRS, PROMPTS, attribute_scores, counterfactual
from mcaclip.toyfaces.attributes import CHOICES, Face
from mcaclip.toyfaces.data import labels


class _Reads:
    """A probe that reads the given faces, whatever the image."""

    def __init__(self, faces):
        self.faces = faces

    def predict(self, images):
        return labels(self.faces)


def test_glasses_of_either_kind_satisfy_a_prompt_that_names_no_kind():
    changes = PROMPTS["yellow glasses"][0]
    base = Face.sample(np.random.default_rng(0))
    bare = dataclasses.replace(base, glasses="none")
    worn = dataclasses.replace(base, glasses="round", glasses_colour="black")
    faces = [bare, bare, bare, worn, worn]
    drawn = [
        dataclasses.replace(bare, glasses="square", glasses_colour="yellow"),  # added: any kind
        dataclasses.replace(bare, glasses="round", glasses_colour="yellow"),
        dataclasses.replace(bare, glasses="square", glasses_colour="green"),  # wrong colour
        dataclasses.replace(worn, glasses="square", glasses_colour="yellow"),  # kind changed
        dataclasses.replace(worn, glasses_colour="yellow"),
    ]
    cf = [counterfactual(f, changes) for f in faces]
    success, kept = attribute_scores(
        _Reads(drawn), torch.zeros(5, 3, 8, 8), labels(faces), faces, cf, changes
    )
    assert success.tolist() == [1.0, 1.0, 0.0, 0.0, 1.0]
    assert kept.tolist() == [1.0] * 5
    # a prompt that names the kind ("goatee") keeps asking for it
    goatee = PROMPTS["blue goatee"][0]
    full = dataclasses.replace(bare, beard="full", beard_colour="blue")
    s, _ = attribute_scores(
        _Reads([full]),
        torch.zeros(1, 3, 8, 8),
        labels([bare]),
        [bare],
        [counterfactual(bare, goatee)],
        goatee,
    )
    assert s.tolist() == [0.0]
    assert "glasses" in ATTRS and "square" in CHOICES["glasses"]
