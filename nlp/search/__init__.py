"""Decoding strategies. Each is small and separate; all share one step function (`step.Stepper`)."""

from nlp.search.beam import beam_search
from nlp.search.greedy import greedy_search
from nlp.search.hypothesis import Hypothesis
from nlp.search.rerank import sample_and_rerank
from nlp.search.sampling import sample
from nlp.search.step import StepConstraints, Stepper

__all__ = [
    "Hypothesis",
    "StepConstraints",
    "Stepper",
    "beam_search",
    "greedy_search",
    "sample",
    "sample_and_rerank",
]
