"""RLHF Studio: preference data, SFT / reward model / PPO / DPO training and side-by-side chat."""

__version__ = "0.1.0"
