"""The studio's own PPO loop (TRL 1.16 has none), on accelerate; the PPO stage (stages/ppo.py) trains with it.

loop.py        PPOTrainer: the run from start to saved policy; `train(config, run_dir, ...)`
step.py        one step: rollout -> rewards and advantages -> PPO epochs over minibatches -> metrics
rollout.py     sampling, reference log-probs, values and reward-model scores (no gradients)
core.py        the tensor maths: KL penalty, whitening, GAE, clipped losses (pure functions)
models.py      policy + critic, frozen reference, scorer
data.py        prompts for the rollouts, SFT batches for PPO-ptx
health.py      the alarms: KL budget, reward hacking, collapse, NaN
checkpoint.py  checkpoints to resume from exactly, and the final save
"""

from rlhf_studio.training.ppo.loop import PPOTrainer, train

__all__ = ["PPOTrainer", "train"]
