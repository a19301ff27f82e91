"""Training: GRPO (+LoRA) and SFT as thin wrappers around TRL's trainers, plus logging callbacks."""
