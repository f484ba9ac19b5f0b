"""Meta-training learned optimizers: ES/PES estimators over truncated unrolls on the population
engine, the outer loop with atomic checkpoints (no Hydra/OmegaConf here)."""
