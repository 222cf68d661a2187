"""Evaluation along a run: which images are drawn, how, and where their scores go.

- `evaluator.py`: at each eval step, sample every planned cell (`dreamsweep.cells`), score
  it with `dreamsweep.metrics`, write it; the base model's baselines before training.
- `sampling.py`: the one seeded, batched text-to-image loop (also draws the class images).
- `schedulers.py`: sampling schedulers by short name, built from the model's own config.
- `prompts.py`: the prompt suites (DreamBench templates or the user's own).
- `outputs.py`: one scored cell's files in the run folder.
- `rescore.py`: `evaluate.py`'s work, scoring saved weights without training.

Importing the package imports nothing heavy: `train.py` checks a config with `prompts` and
`schedulers` without loading torch.
"""
