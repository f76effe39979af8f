"""Optimizers that run on gradient information; each is a ``GradTransform`` chain and a ``torch.optim.Optimizer``."""
