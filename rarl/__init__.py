"""rarl: reasoning-aware reinforcement learning (GRPO + LoRA) for small medical vision-language models."""

__version__ = "0.1.0"
