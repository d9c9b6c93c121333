"""Registers the toy stage (toy.py) in every Python process started with this folder on PYTHONPATH: the app
and the training children it starts, or `python -m rlhf_studio ...` (tests/test_stage_registry.py)."""

import toy

from rlhf_studio.stages import registry

registry.STAGES.append(toy.STAGE)
